-- A deleted job leaves the live projection, atomically: its session no longer counts it, its
-- keys go, and a tombstone makes any late or redelivered event of it change nothing. Its
-- deletion is a change of the session: it stays in the change index with that rev, its hash
-- gone, so a delta since before it says it was deleted.
-- KEYS (in the order tally_contracts.projection.fold_keys gives them, as for _fold.lua):
-- KEYS[1]: job             the job's hash
-- KEYS[2]: session         the session summary hash
-- KEYS[3]: session_order   the session's jobs in order
-- KEYS[4]: session_events  the session's event stream
-- KEYS[5]: tenant_jobs     the tenant's job index
-- KEYS[6]: job_log         the job's log
-- KEYS[7]: ready           the ready marker
-- KEYS[8]: tombstone       the job's tombstone
-- KEYS[9]: session_changes the session's jobs by the rev of their last change
-- ARGV: 1 job id, 2 tombstone TTL s, 3 stream max length, 4 session TTL s
-- Returns 1 when the job was there, 0 when it was not (deleted before), -1 (nothing done) when
-- the projection was lost and must be rebuilt first.
if redis.call('EXISTS', KEYS[7]) == 0 then
  return -1
end
redis.call('SET', KEYS[8], '1', 'EX', ARGV[2])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return 0
end
local processed = tonumber(redis.call('HGET', KEYS[1], 'processed') or '0')
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
-- Only final jobs are deleted: they hold no open slices and no unplanned size. `0 - n`, not
-- `-n`: Lua makes -0 of an unplanned job's 0, which HINCRBY refuses ("-0" is not an integer).
redis.call('HINCRBY', KEYS[2], 'total', -1)
redis.call('HINCRBY', KEYS[2], status, -1)
redis.call('HINCRBY', KEYS[2], 'slices_done', 0 - processed)
redis.call('HINCRBY', KEYS[2], 'slices_total', 0 - total)
if total > 0 then
  redis.call('HINCRBY', KEYS[2], 'jobs_planned', -1)
end
local order = redis.call('HGET', KEYS[1], 'order')
if order then
  redis.call('ZREM', KEYS[3], order)
end
redis.call('ZADD', KEYS[9], redis.call('HINCRBY', KEYS[2], 'rev', 1), ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[6])
local function append(...)
  local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', ...)
  redis.call('HSET', KEYS[2], 'last_event_id', id)
end
append('type', 'deleted', 'job_id', ARGV[1])
append('type', 'summary', unpack(redis.call('HGETALL', KEYS[2])))
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 1
