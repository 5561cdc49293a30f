-- Tell a session's subscribers where its rebuilt jobs stand: each job's snapshot, then the
-- session summary go to the session's stream (and `done` when the session has finished). A
-- rebuild folds every job's history quietly and announces only where it ended, once all of
-- them are folded, so a subscriber never sees a job step back through states it passed, nor a
-- session `done` that is only missing jobs not yet rebuilt.
-- KEYS (in the order tally_contracts.projection.announce_keys gives them):
-- KEYS[1]: session         the session summary hash
-- KEYS[2]: session_events  the session's event stream
-- KEYS[3...]: job          the hashes of the jobs to announce
-- ARGV: 1 stream max length, 2 session TTL s, 3 '1' on a session's last batch of jobs (the
--       summary and `done` follow it), '0' before (a big session is told in batches, so that
--       no call holds Redis for long)
local function append(kind, hash)
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', kind,
    unpack(redis.call('HGETALL', hash)))
  redis.call('HSET', KEYS[1], 'last_event_id', id)
end
local function number(field)
  return tonumber(redis.call('HGET', KEYS[1], field) or '0')
end
for i = 3, #KEYS do
  append('job', KEYS[i])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
if ARGV[3] ~= '1' then
  return 1
end
append('summary', KEYS[1])
if number('total') > 0 and number('queued') == 0 and number('processing') == 0 then
  append('done', KEYS[1])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
