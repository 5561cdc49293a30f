-- Open a stream if its key and its tenant are both under their caps: one round trip, atomic
-- across every gateway replica (tally_gateway._leases).
-- KEYS[1]: the key's open streams, KEYS[2]: the tenant's (sorted sets: stream id → lease expiry)
-- ARGV: now, lease expiry (epoch seconds), stream id, cap per key, cap per tenant, set TTL (s)
-- Returns "open", or which cap is full: "key" or "tenant".
local now = tonumber(ARGV[1])
-- Leases a process stopped refreshing (it crashed, lost Redis) count no more.
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now)
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[4]) then
    return "key"
end
if redis.call("ZCARD", KEYS[2]) >= tonumber(ARGV[5]) then
    return "tenant"
end
for _, key in ipairs(KEYS) do
    redis.call("ZADD", key, ARGV[2], ARGV[3])
    redis.call("EXPIRE", key, ARGV[6])
end
return "open"
