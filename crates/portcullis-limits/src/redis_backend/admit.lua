-- Admission: checks every bucket of one request against its sliding window on Redis's clock
-- and, only if all have room, charges them all and marks the reservation (atomic, so any
-- number of replicas admit exactly what one process would).
-- KEYS: one per bucket, then the reservation marker when ARGV[4] is '1'.
-- ARGV: bucket count, reservation id, lease (ms), marker flag, then per bucket:
--   kind ('r' requests, 't' tokens, 'p' parallel), capacity, slice (ms), slices, cost.
-- Reply: {1, now, used per bucket after the charge}, or
--   {0, now, failing bucket, (used, newest slice) per bucket, the failing window's slices}.
local function fmt(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
local rid = ARGV[2]
local lease = tonumber(ARGV[3])
local used, latest = {}, {}
local fail = 0
for i = 1, nb do
  local b = 4 + (i - 1) * 5
  local kind, cap, g, n, cost = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local key = KEYS[i]
  local u, l = 0, -1
  if kind == 'p' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    u = redis.call('ZCARD', key)
  else
    local low = math.floor(now / g) - n
    local h = redis.call('HMGET', key, 's', 'o', 'l')
    u = tonumber(h[1]) or 0
    local o = tonumber(h[2])
    l = tonumber(h[3]) or -1
    if o and o < low then
      if l < low then
        redis.call('DEL', key)
        u, l = 0, -1
      elseif low - o > 2 * n + 2 then
        local all = redis.call('HGETALL', key)
        u = 0
        for k = 1, #all, 2 do
          local idx = tonumber(all[k])
          if idx then
            if idx < low then redis.call('HDEL', key, all[k]) else u = u + tonumber(all[k + 1]) end
          end
        end
        redis.call('HSET', key, 's', fmt(u), 'o', fmt(low))
      else
        for j = o, low - 1 do
          local f = fmt(j)
          local v = tonumber(redis.call('HGET', key, f))
          if v then
            u = u - v
            redis.call('HDEL', key, f)
          end
        end
        if u < 0 then u = 0 end
        redis.call('HSET', key, 's', fmt(u), 'o', fmt(low))
      end
    end
  end
  used[i], latest[i] = u, l
  if fail == 0 and u + cost > cap then fail = i end
end
if fail > 0 then
  local out = {0, fmt(now), fail}
  for i = 1, nb do
    out[#out + 1] = fmt(used[i])
    out[#out + 1] = fmt(latest[i])
  end
  local b = 4 + (fail - 1) * 5
  if ARGV[b + 1] ~= 'p' then
    local all = redis.call('HGETALL', KEYS[fail])
    for k = 1, #all, 2 do
      if tonumber(all[k]) then
        out[#out + 1] = all[k]
        out[#out + 1] = all[k + 1]
      end
    end
  end
  return out
end
local out = {1, fmt(now)}
for i = 1, nb do
  local b = 4 + (i - 1) * 5
  local kind, g, n = ARGV[b + 1], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local key = KEYS[i]
  if kind == 'p' then
    redis.call('ZADD', key, fmt(now + lease), rid)
    redis.call('PEXPIRE', key, lease + 1000)
  else
    local cur = fmt(math.floor(now / g))
    redis.call('HINCRBY', key, cur, ARGV[b + 5])
    redis.call('HINCRBY', key, 's', ARGV[b + 5])
    redis.call('HSETNX', key, 'o', cur)
    redis.call('HSET', key, 'l', cur)
    redis.call('PEXPIRE', key, (n + 2) * g)
  end
  out[#out + 1] = fmt(used[i] + tonumber(ARGV[b + 5]))
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[nb + 1], '1', 'PX', lease)
end
return out
