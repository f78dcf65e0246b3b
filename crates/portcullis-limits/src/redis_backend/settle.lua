-- Settlement: deletes the reservation marker (a second settle finds none and does nothing),
-- frees its parallel slots and books the token difference into the slice it was charged to.
-- KEYS: the reservation marker, then one per bucket.
-- ARGV: bucket count, reservation id, admission time (ms), then per bucket:
--   kind ('r', 't' or 'p'), slice (ms), slices, token delta.
-- Reply: 1 if it settled, 0 if the reservation was already settled or expired.
local function fmt(x) return string.format('%d', x) end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
local rid = ARGV[2]
local at = tonumber(ARGV[3])
for i = 1, nb do
  local b = 3 + (i - 1) * 4
  local kind, g, n, d = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local key = KEYS[i + 1]
  if kind == 'p' then
    redis.call('ZREM', key, rid)
  elseif kind == 't' and d ~= 0 then
    local slice = math.floor(at / g)
    if slice >= math.floor(now / g) - n then
      local f = fmt(slice)
      local v = tonumber(redis.call('HGET', key, f)) or 0
      if v + d < 0 then d = -v end
      if d ~= 0 then
        redis.call('HINCRBY', key, f, fmt(d))
        if redis.call('HINCRBY', key, 's', fmt(d)) < 0 then redis.call('HSET', key, 's', '0') end
        redis.call('HSETNX', key, 'o', f)
        redis.call('HSETNX', key, 'l', f)
        if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, (n + 2) * g) end
      end
    end
  end
end
return 1
