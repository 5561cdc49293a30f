-- Token buckets of one request, taken from atomically: one round trip whatever the buckets.
-- KEYS: the buckets (an API key's and its tenant's, or a client address's), each a hash of
--       t (tokens left) and at (when t was true, in Redis server seconds).
-- ARGV[1]: the cost; ARGV[2]: 'take' (all buckets or none: a request needs room in each) or
--       'debit' (take from each whatever it holds, down to 0: a charge for what has been served);
--       then for each key its rate (tokens per second) and burst (the bucket's size).
-- Returns {allowed (1/0), seconds until the request would fit (0 if allowed), then for each
--       key its tokens left and 1/0: had it room}, numbers as strings (Redis would truncate a
--       Lua number to an integer).
-- The time is Redis's own (TIME): every replica of every service reads the same clock, where
-- their own clocks (monotonic ones are per process, wall clocks drift apart) would make one
-- replica's refill another's debt. Redis 7 replicates a script's effects, not the script, so
-- TIME is allowed before writes. A clock that steps back (a failover) refills nothing.
local now_s, now_us = unpack(redis.call('TIME'))
local now = tonumber(now_s) + tonumber(now_us) / 1000000
local cost = tonumber(ARGV[1])
local debit = ARGV[2] == 'debit'
local levels, rates, bursts, room = {}, {}, {}, {}
local allowed, wait = 1, 0
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', key, 't', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  -- A request dearer than the whole bucket needs it full (else it could never pass).
  local need = math.min(cost, burst)
  levels[i], rates[i], bursts[i], room[i] = tokens, rate, burst, tokens >= need
  if not room[i] then
    allowed = 0
    wait = math.max(wait, (need - tokens) / rate)
  end
end
if debit then
  allowed, wait = 1, 0
end
local out = {allowed, tostring(wait)}
for i, key in ipairs(KEYS) do
  if allowed == 1 then
    levels[i] = math.max(0, levels[i] - math.min(cost, bursts[i]))
    redis.call('HSET', key, 't', tostring(levels[i]), 'at', tostring(now))
    -- Once it would be full again the bucket is as good as absent: let Redis drop it.
    redis.call('PEXPIRE', key, math.ceil((bursts[i] - levels[i]) / rates[i] * 1000) + 1000)
  end
  out[#out + 1] = tostring(levels[i])
  out[#out + 1] = room[i] and 1 or 0
end
return out
