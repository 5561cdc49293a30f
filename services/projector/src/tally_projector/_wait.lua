-- Fold a session's wait (a SessionWait: the orchestrator's estimate of how long its open jobs
-- and the session have left) into the session hash and its jobs' hashes.
-- KEYS (in the order tally_contracts.projection.wait_keys gives them):
-- KEYS[1]: session         the session summary hash
-- KEYS[2]: session_events  the session's event stream
-- KEYS[3]: session_changes the session's jobs by the rev of their last change (its deltas)
-- KEYS[4...]: job          the hashes of the session's open jobs
-- ARGV: 1 the estimate's time (epoch s), 2 the same as ISO 8601, 3 the session's wait JSON,
--       4 the jobs' waits, a JSON list in the order of KEYS[4...], 5 stream max length,
--       6 session TTL s, 7 the final statuses, a JSON list, 8 the least change that counts (s),
--       9 the least change that counts, as a fraction of the new wait
-- A wait is {"s": seconds, "lo": low, "hi": high} or {"why": reason} when there is none.
-- A hash keeps its wait while the new one is within the least change of it counted down to now
-- (a countdown from `eta_at` is then still right): only a change that counts is written, and
-- each write is a visible change (a rev, the job's snapshot and the summary on the stream), so
-- polling and SSE show the same. An estimate older than the one kept, a job not folded yet or
-- final, a session not folded yet or finished: nothing. Returns how many hashes changed.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then
  return 0
end
local at = tonumber(ARGV[1])
local min_s, min_fraction = tonumber(ARGV[8]), tonumber(ARGV[9])
local FINAL = {}
for _, name in ipairs(cjson.decode(ARGV[7])) do
  FINAL[name] = true
end

local function counts(key, wait)
  local kept_at = tonumber(redis.call('HGET', key, 'eta_epoch') or '')
  if kept_at and at <= kept_at then
    return false  -- an older estimate, or the same one again
  end
  local why = wait['why'] or ''
  local kept_why = redis.call('HGET', key, 'eta_reason')
  if not kept_at or why ~= (kept_why or '') then
    return true
  end
  if why ~= '' then
    return false
  end
  local kept = tonumber(redis.call('HGET', key, 'eta') or '0')
  local left = math.max(kept - (at - kept_at), 0)
  return math.abs(wait['s'] - left) > math.max(min_s, min_fraction * wait['s'])
end

local function write(key, wait)
  if wait['why'] then
    redis.call('HSET', key, 'eta_reason', wait['why'], 'eta_epoch', ARGV[1], 'eta_at', ARGV[2])
    redis.call('HDEL', key, 'eta', 'eta_low', 'eta_high')
  else
    redis.call('HSET', key, 'eta', wait['s'], 'eta_low', wait['lo'], 'eta_high', wait['hi'],
      'eta_epoch', ARGV[1], 'eta_at', ARGV[2])
    redis.call('HDEL', key, 'eta_reason')
  end
end

local changed_jobs = {}
local waits = cjson.decode(ARGV[4])
for i = 4, #KEYS do
  local status = redis.call('HGET', KEYS[i], 'status')
  if status and not FINAL[status] and counts(KEYS[i], waits[i - 3]) then
    write(KEYS[i], waits[i - 3])
    changed_jobs[#changed_jobs + 1] = KEYS[i]
  end
end
local session_wait = cjson.decode(ARGV[3])
local open = tonumber(redis.call('HGET', KEYS[1], 'queued') or '0')
  + tonumber(redis.call('HGET', KEYS[1], 'processing') or '0')
local session_changed = open > 0 and counts(KEYS[1], session_wait)
if session_changed then
  write(KEYS[1], session_wait)
end
if #changed_jobs == 0 and not session_changed then
  return 0
end

local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
local function append(kind, hash)
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', kind,
    unpack(redis.call('HGETALL', hash)))
  redis.call('HSET', KEYS[1], 'last_event_id', id)
end
for _, key in ipairs(changed_jobs) do
  redis.call('HSET', key, 'rev', rev)
  redis.call('ZADD', KEYS[3], rev, redis.call('HGET', key, 'job_id'))
  append('job', key)
end
append('summary', KEYS[1])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[6])
return #changed_jobs + (session_changed and 1 or 0)
