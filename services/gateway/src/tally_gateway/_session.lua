-- Read one session of the projection atomically: one round trip whatever its job count.
-- KEYS (in the order tally_contracts.projection.session_read_keys gives them):
-- KEYS[1]: ready           the ready marker
-- KEYS[2]: session         the session hash
-- KEYS[3]: session_jobs    the session's job set
-- ARGV: 1 the caller's tenant id, 2 the version (last_event_id) the caller already holds, or '',
--       3 the prefix of a job's key (tally_contracts.projection.JOB_KEY_PREFIX)
-- Returns {'lost'} when the projection is not whole (read PostgreSQL), {'missing'} when Redis
-- has no such session, {'foreign'} when it is another tenant's, {'same', version} when nothing
-- changed since the caller's version, else {'fresh', version, session hash, job hash...}.
-- (Job keys are derived here, not declared: fine on one Redis; a cluster would need the
-- session's keys in one hash slot.)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'lost'}
end
local tenant = redis.call('HGET', KEYS[2], 'tenant_id')
if not tenant then
  return {'missing'}
end
if tenant ~= ARGV[1] then
  return {'foreign'}
end
local version = redis.call('HGET', KEYS[2], 'last_event_id') or ''
if version == ARGV[2] then
  return {'same', version}
end
local out = {'fresh', version, redis.call('HGETALL', KEYS[2])}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. id)
end
return out
