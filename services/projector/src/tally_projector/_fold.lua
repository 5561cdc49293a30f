-- Fold one job event into the live projection, atomically and idempotently.
-- KEYS: 1 job hash, 2 session summary hash, 3 session job set, 4 session event stream,
--       5 tenant job index (sorted set), 6 job log (list, newest first)
-- ARGV: 1 sequence, 2 status, 3 facts JSON, 4 state JSON, 5 job TTL s, 6 session TTL s,
--       7 stream max length, 8 index score, 9 maxima JSON, 10 log entry JSON, 11 log length
-- Facts (who the job is, its file, its plan) are true whenever they arrive: set once, even from a
-- late event. State (status, phase, progress, result) follows the per-job sequence: an event not
-- newer than the last folded one changes none of it, and a final status is never left. Maxima
-- (slices done) only grow, whatever the order. So any
-- order, repetition or loss of events ends where applying the delivered ones by sequence would.
-- Returns 1 when the state changed, 0 otherwise.
local function number(field)
  return tonumber(redis.call('HGET', KEYS[1], field) or '0')
end

local old_status = redis.call('HGET', KEYS[1], 'status')
local old_processed = number('processed')
local old_total = number('total')

local facts = cjson.decode(ARGV[3])
for name, value in pairs(facts) do
  redis.call('HSETNX', KEYS[1], name, value)
end

for name, value in pairs(cjson.decode(ARGV[9])) do
  if tonumber(value) > number(name) then
    redis.call('HSET', KEYS[1], name, value)
  end
end

local seq = tonumber(ARGV[1])
local newer = seq > number('seq') and old_status ~= 'completed' and old_status ~= 'failed'
  and old_status ~= 'cancelled'
if newer then
  local flat = {'seq', ARGV[1], 'status', ARGV[2]}
  for name, value in pairs(cjson.decode(ARGV[4])) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  redis.call('HSET', KEYS[1], unpack(flat))
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'completed' then
  -- A completed job did every slice it planned, whichever progress events were missed.
  redis.call('HSET', KEYS[1], 'processed', redis.call('HGET', KEYS[1], 'total') or '0')
end
redis.call('EXPIRE', KEYS[1], ARGV[5])

-- The session summary follows the job: jobs per status, slices done and planned.
if not old_status then
  redis.call('HINCRBY', KEYS[2], 'total', 1)
  redis.call('SADD', KEYS[3], facts['job_id'])
  redis.call('ZADD', KEYS[5], ARGV[8], facts['job_id'])
  redis.call('HINCRBY', KEYS[2], status, 1)
elseif old_status ~= status then
  redis.call('HINCRBY', KEYS[2], old_status, -1)
  redis.call('HINCRBY', KEYS[2], status, 1)
end
redis.call('HINCRBY', KEYS[2], 'slices_done', number('processed') - old_processed)
redis.call('HINCRBY', KEYS[2], 'slices_total', number('total') - old_total)
redis.call('HSET', KEYS[2], 'tenant_id', facts['tenant_id'])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('EXPIRE', KEYS[5], ARGV[5])

-- Every event the job sees goes to its recent log, stale or not: the log is what happened.
redis.call('LPUSH', KEYS[6], ARGV[10])
redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[11]) - 1)
redis.call('EXPIRE', KEYS[6], ARGV[5])

if newer then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', unpack(redis.call('HGETALL', KEYS[1])))
  redis.call('EXPIRE', KEYS[4], ARGV[6])
  return 1
end
return 0
