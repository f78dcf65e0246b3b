-- Budget hold: checks a request's worst case against every (scope, period) counter it names
-- and, only if all fit, adds it to all of them (atomic, so replicas never over-admit).
-- Missing counters are created from the caller's seeds (ledger totals) or reported.
-- KEYS: per budget: the counter hash, its lease set; then the hold's settlement marker.
-- ARGV: budget count, hold id, now (ms), lease (ms), worst case, marker ttl (ms), then per
--   budget: limit, soft threshold, counter ttl (ms), seed ('' when none).
-- Counter hash: 'v' spent + held, 'a' soft alert fired, 'h:ID' amount held by hold ID.
-- Lease set: hold ids scored by lease expiry; expired holds leave the counter first.
-- Reply: {1, (counter before, alert 0/1) per budget} held;
--   {0, refusing budget, its counter} refused; {2, missing budget indexes...} seeds needed.
local function fmt(x) return string.format('%d', x) end
local n = tonumber(ARGV[1])
local rid, now, lease, worst = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local v, missing = {}, {}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local b = 6 + (i - 1) * 4
  if redis.call('EXISTS', h) == 0 and ARGV[b + 4] ~= '' then
    redis.call('HSET', h, 'v', ARGV[b + 4])
    redis.call('PEXPIRE', h, ARGV[b + 3])
  end
  if redis.call('EXISTS', h) == 1 then
    local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 256)
    for _, id in ipairs(gone) do
      local amount = tonumber(redis.call('HGET', h, 'h:' .. id))
      if amount then
        redis.call('HDEL', h, 'h:' .. id)
        if redis.call('HINCRBY', h, 'v', fmt(-amount)) < 0 then redis.call('HSET', h, 'v', '0') end
      end
      redis.call('ZREM', z, id)
    end
    v[i] = tonumber(redis.call('HGET', h, 'v')) or 0
  else
    v[i] = false
    missing[#missing + 1] = i
  end
end
for i = 1, n do
  if v[i] and v[i] + worst > tonumber(ARGV[6 + (i - 1) * 4 + 1]) then
    return {0, i, fmt(v[i])}
  end
end
if #missing > 0 then
  local out = {2}
  for _, i in ipairs(missing) do out[#out + 1] = i end
  return out
end
local out = {1}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local b = 6 + (i - 1) * 4
  redis.call('HINCRBY', h, 'v', ARGV[5])
  redis.call('HSET', h, 'h:' .. rid, ARGV[5])
  redis.call('ZADD', z, fmt(now + lease), rid)
  redis.call('PEXPIRE', h, ARGV[b + 3])
  redis.call('PEXPIRE', z, ARGV[b + 3])
  local alert = 0
  if v[i] + worst >= tonumber(ARGV[b + 2]) and redis.call('HSETNX', h, 'a', '1') == 1 then
    alert = 1
  end
  out[#out + 1] = fmt(v[i])
  out[#out + 1] = alert
end
redis.call('SET', KEYS[2 * n + 1], '1', 'PX', ARGV[6])
return out
