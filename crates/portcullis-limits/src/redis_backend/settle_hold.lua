-- Budget settlement: deletes the hold's marker (a second settlement finds none and does
-- nothing), then in each counter replaces the amount held by the actual cost. A hold whose
-- lease already took it out of a counter adds the actual cost; a counter that is gone is left
-- to be seeded from the ledger.
-- KEYS: the hold's settlement marker, then per counter: the counter hash, its lease set.
-- ARGV: counter count, hold id, actual cost.
-- Reply: 1 if it settled, 0 if the hold was already settled or lapsed.
local function fmt(x) return string.format('%d', x) end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local n, rid, actual = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
for i = 1, n do
  local h, z = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('EXISTS', h) == 1 then
    local d = actual
    local held = tonumber(redis.call('HGET', h, 'h:' .. rid))
    if held then
      redis.call('HDEL', h, 'h:' .. rid)
      redis.call('ZREM', z, rid)
      d = actual - held
    end
    if d ~= 0 and redis.call('HINCRBY', h, 'v', fmt(d)) < 0 then
      redis.call('HSET', h, 'v', '0')
    end
  end
end
return 1
