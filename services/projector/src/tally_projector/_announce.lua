-- Tell a session's subscribers where its rebuilt jobs stand: each job's snapshot, then the
-- session summary go to the session's stream (and `done` when the session has finished). A
-- rebuild folds every job's history quietly and announces only where it ended, once all of
-- them are folded, so a subscriber never sees a job step back through states it passed, nor a
-- session `done` that is only missing jobs not yet rebuilt.
-- KEYS: 1 session summary hash, 2 session event stream
-- ARGV: 1 stream max length, 2 session TTL s, 3... the job ids to announce
-- (Job keys are derived here: fine on one Redis; a cluster needs the session in one slot.)
local function append(kind, hash)
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', kind,
    unpack(redis.call('HGETALL', hash)))
  redis.call('HSET', KEYS[1], 'last_event_id', id)
end
local function number(field)
  return tonumber(redis.call('HGET', KEYS[1], field) or '0')
end
for i = 3, #ARGV do
  append('job', 'job:' .. ARGV[i])
end
append('summary', KEYS[1])
if number('total') > 0 and number('queued') == 0 and number('processing') == 0 then
  append('done', KEYS[1])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
