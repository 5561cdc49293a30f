-- Read one session of the projection: its summary, and the job ids of one page or one delta.
-- Bounded by the page, not by the session: a sorted-set range of at most `limit` + 1 members,
-- whatever the session's size. The jobs' hashes are read after it, in a pipeline, so the
-- script holds Redis (for every tenant) only that long.
-- KEYS (in the order tally_contracts.projection.session_read_keys gives them):
-- KEYS[1]: ready            the ready marker
-- KEYS[2]: session          the session hash
-- KEYS[3]: session_order    the session's jobs in order (members: order members)
-- KEYS[4]: session_changes  the session's job ids by the rev of their last change
-- ARGV: 1 the caller's tenant id,
--       2 the version ('epoch.rev') the caller already holds an answer of, or '',
--       3 what to read: 'summary', 'page' or 'since',
--       4 page: the order member after which the page starts ('' from the first job);
--         since: the rev the caller has seen,
--       5 since: the epoch of the caller's version,
--       6 the page's size (the script reads one more, to tell whether there is a next page)
-- Returns {'lost'} when the projection is not whole (read PostgreSQL), {'missing'} when Redis
-- has no such session, {'foreign'} when it is another tenant's, {'same'} when the version is
-- still the caller's, else {'fresh', epoch, rev, last_event_id, session hash, what, items}:
-- what 'summary' (no items), 'page' (order members) or 'delta' (job id, rev, job id, rev, ...
-- by rev); a `since` from another epoch, or from after this rev, reads the first page instead
-- and says 'reload'.
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
local epoch = redis.call('HGET', KEYS[2], 'epoch') or '0'
local rev = redis.call('HGET', KEYS[2], 'rev') or '0'
if ARGV[2] == epoch .. '.' .. rev then
  return {'same'}
end
local head = {'fresh', epoch, rev, redis.call('HGET', KEYS[2], 'last_event_id') or '',
  redis.call('HGETALL', KEYS[2])}
local limit = tonumber(ARGV[6])
local what = ARGV[3]
if what == 'summary' then
  head[#head + 1] = 'summary'
  head[#head + 1] = {}
  return head
end
if what == 'since' then
  if ARGV[5] == epoch and tonumber(ARGV[4]) <= tonumber(rev) then
    head[#head + 1] = 'delta'
    head[#head + 1] = redis.call('ZRANGE', KEYS[4], '(' .. ARGV[4], '+inf', 'BYSCORE', 'LIMIT', 0,
      limit + 1, 'WITHSCORES')
    return head
  end
  what, ARGV[4] = 'reload', ''
end
local start = ARGV[4] == '' and '-' or '(' .. ARGV[4]
head[#head + 1] = what
head[#head + 1] = redis.call('ZRANGE', KEYS[3], start, '+', 'BYLEX', 'LIMIT', 0, limit + 1)
return head
