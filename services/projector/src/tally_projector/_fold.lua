-- Fold one job event into the live projection, atomically and idempotently.
-- KEYS (in the order tally_contracts.projection.fold_keys gives them):
-- KEYS[1]: job             the job's hash
-- KEYS[2]: session         the session summary hash
-- KEYS[3]: session_order   the session's jobs in order (its pages)
-- KEYS[4]: session_events  the session's event stream
-- KEYS[5]: tenant_jobs     the tenant's job index (sorted set)
-- KEYS[6]: job_log         the job's log (list, newest first)
-- KEYS[7]: ready           the ready marker
-- KEYS[8]: tombstone       the job's tombstone (set when it was deleted, _forget.lua)
-- KEYS[9]: session_changes the session's jobs by the rev of their last change (its deltas)
-- ARGV: 1 sequence, 2 status, 3 facts JSON, 4 state JSON, 5 job TTL s, 6 session TTL s,
--       7 stream max length, 8 index score, 9 maxima JSON, 10 log entry JSON, 11 log length,
--       12 activity time (epoch s of slice work: started, progress, final; '' for none),
--       13 '1' when rebuilding: the ready marker is not needed, and nothing goes to the stream
--       (a rebuild re-tells each job's history; subscribers get its end, see _announce.lua),
--       14 the final statuses, a JSON list (tally_contracts.statuses.FINAL),
--       15 the job's order member (tally_contracts.projection.order_member), from this event's
--       time: the first event folded places the job
-- Facts (who the job is, its file, its plan) are true whenever they arrive: set once, even from a
-- late event. State (status, phase, progress, result) follows the per-job sequence: an event not
-- newer than the last folded one changes none of it, and a final status is never left. Maxima
-- (slices done) only grow, whatever the order. So any order, repetition or loss of events ends
-- where applying the delivered ones by sequence would.
-- Every visible change counts in the session's `rev` (the job keeps the rev of its last change,
-- and the session's change index has it), then appends the job's snapshot and the session summary
-- to the session's stream (and `done` when the session's last open job finishes); the session
-- hash keeps the id of the last entry, `last_event_id`, the stream position of what it shows.
-- Returns 1 when the job changed, 0 otherwise, -1 (nothing done) when the projection was lost
-- (Redis wiped or restarted empty) and must be rebuilt first.
if ARGV[13] ~= '1' and redis.call('EXISTS', KEYS[7]) == 0 then
  return -1
end
if redis.call('EXISTS', KEYS[8]) == 1 then  -- the job was deleted: it stays gone
  return 0
end

local FINAL = {}
for _, name in ipairs(cjson.decode(ARGV[14])) do
  FINAL[name] = true
end
local function number(key, field)
  return tonumber(redis.call('HGET', key, field) or '0')
end
-- What a job still owes the session: its slices left, and whether its size is still unknown.
local function open_slices(status, processed, total)
  if not status or FINAL[status] then return 0, 0 end
  if total == 0 then return 0, 1 end
  return total - math.min(processed, total), 0
end

local old_status = redis.call('HGET', KEYS[1], 'status')
local old_processed = number(KEYS[1], 'processed')
local old_total = number(KEYS[1], 'total')
local changed = false

local facts = cjson.decode(ARGV[3])
for name, value in pairs(facts) do
  if redis.call('HSETNX', KEYS[1], name, value) == 1 and old_status then
    changed = true
  end
end

for name, value in pairs(cjson.decode(ARGV[9])) do
  if tonumber(value) > number(KEYS[1], name) then
    redis.call('HSET', KEYS[1], name, value)
    changed = true
  end
end

local seq = tonumber(ARGV[1])
local newer = seq > number(KEYS[1], 'seq') and not FINAL[old_status]
if newer then
  local flat = {'seq', ARGV[1], 'status', ARGV[2]}
  for name, value in pairs(cjson.decode(ARGV[4])) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  redis.call('HSET', KEYS[1], unpack(flat))
  changed = true
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'completed' then
  -- A completed job did every slice it planned, whichever progress events were missed.
  redis.call('HSET', KEYS[1], 'processed', redis.call('HGET', KEYS[1], 'total') or '0')
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local processed, total = number(KEYS[1], 'processed'), number(KEYS[1], 'total')

-- The session summary follows the job: jobs per status, slices done, planned and still open,
-- jobs planned and not, and when slice work was first and last seen (the ETA's throughput).
local was_finished = number(KEYS[2], 'total') > 0 and number(KEYS[2], 'queued') == 0
  and number(KEYS[2], 'processing') == 0
if not old_status then
  redis.call('HINCRBY', KEYS[2], 'total', 1)
  redis.call('ZADD', KEYS[5], ARGV[8], facts['job_id'])
  redis.call('HINCRBY', KEYS[2], status, 1)
elseif old_status ~= status then
  redis.call('HINCRBY', KEYS[2], old_status, -1)
  redis.call('HINCRBY', KEYS[2], status, 1)
end
-- A job without its place (its first fold, or one of a projection before pages) takes it now.
if redis.call('HSETNX', KEYS[1], 'order', ARGV[15]) == 1 then
  redis.call('ZADD', KEYS[3], 0, ARGV[15])
end
local old_open, old_unplanned = open_slices(old_status, old_processed, old_total)
local open, unplanned = open_slices(status, processed, total)
redis.call('HINCRBY', KEYS[2], 'slices_done', processed - old_processed)
redis.call('HINCRBY', KEYS[2], 'slices_total', total - old_total)
redis.call('HINCRBY', KEYS[2], 'slices_open', open - old_open)
redis.call('HINCRBY', KEYS[2], 'jobs_unplanned', unplanned - old_unplanned)
if old_total == 0 and total > 0 then
  redis.call('HINCRBY', KEYS[2], 'jobs_planned', 1)
end
if ARGV[12] ~= '' then
  local at = tonumber(ARGV[12])
  local first = redis.call('HGET', KEYS[2], 'first_active')
  if not first or at < tonumber(first) then
    redis.call('HSET', KEYS[2], 'first_active', ARGV[12])
    changed = changed or old_status ~= nil
  end
  if at > number(KEYS[2], 'last_active') then
    redis.call('HSET', KEYS[2], 'last_active', ARGV[12])
  end
end
redis.call('HSET', KEYS[2], 'tenant_id', facts['tenant_id'], 'session_id', facts['session_id'])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('EXPIRE', KEYS[5], ARGV[5])

-- Every event the job sees goes to its recent log, stale or not: the log is what happened.
redis.call('LPUSH', KEYS[6], ARGV[10])
redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[11]) - 1)
redis.call('EXPIRE', KEYS[6], ARGV[5])

if not (changed or not old_status) then
  return 0
end
-- The change's place in the session's history: what delta polls ask for (`since`). A session
-- projected anew (Redis lost it) starts a new epoch, so no rev of the old one is taken for it.
if redis.call('HEXISTS', KEYS[2], 'epoch') == 0 then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[2], 'epoch', now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
end
local rev = redis.call('HINCRBY', KEYS[2], 'rev', 1)
redis.call('HSET', KEYS[1], 'rev', rev)
redis.call('ZADD', KEYS[9], rev, facts['job_id'])
redis.call('EXPIRE', KEYS[9], ARGV[6])
local updated = redis.call('HGET', KEYS[1], 'updated_at')
local last_updated = redis.call('HGET', KEYS[2], 'last_updated')
if updated and (not last_updated or updated > last_updated) then  -- ISO 8601, UTC: as text
  redis.call('HSET', KEYS[2], 'last_updated', updated)
end
if ARGV[13] == '1' then
  return 1
end
local function append(kind, hash)
  local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'type', kind,
    unpack(redis.call('HGETALL', hash)))
  redis.call('HSET', KEYS[2], 'last_event_id', id)
end
append('job', KEYS[1])
append('summary', KEYS[2])
local finished = number(KEYS[2], 'queued') == 0 and number(KEYS[2], 'processing') == 0
if finished and not was_finished then
  append('done', KEYS[2])
end
redis.call('EXPIRE', KEYS[4], ARGV[6])
return 1
