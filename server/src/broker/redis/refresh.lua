-- Brings a node's cached copy of a session from the version it holds to the current one: reads
-- only the records changed since, not every question.
-- KEYS: meta, session, questions, changed.
-- ARGV: 1 voters key prefix, 2 version held,
--       then F, and F question ids whose records are wanted anyway (those the copy changed in a
--       commit that was not stored), then C, and C ids whose vote counts are wanted, then the
--       ids whose voters are wanted.
-- Returns nil when the session does not exist, else
--   {ok, seq, version, next_question, session JSON,
--    {{id, record JSON or false}, ...}, {{id, votes}, ...}, {{id, {voter, ...}}, ...}}
-- where ok is 0 when the version held is ahead of the stored one (the data was replaced: read
-- everything instead) and 1 otherwise.
local meta = redis.call('HMGET', KEYS[1], 'seq', 'version', 'next_question')
if not meta[1] then
  return nil
end
local held = tonumber(ARGV[2])
if tonumber(meta[2]) < held then
  return {0, meta[1], meta[2], meta[3], false, {}, {}, {}}
end
local vp = ARGV[1]
local wanted = {}
local ids = {}
for _, q in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[2], '+inf')) do
  if not wanted[q] then
    wanted[q] = true
    ids[#ids + 1] = q
  end
end
local i = 3
for _ = 1, tonumber(ARGV[i]) do
  i = i + 1
  if not wanted[ARGV[i]] then
    wanted[ARGV[i]] = true
    ids[#ids + 1] = ARGV[i]
  end
end
local records = {}
for k, q in ipairs(ids) do
  records[k] = {q, redis.call('HGET', KEYS[3], q)}
end
i = i + 1
local counts = {}
for _ = 1, tonumber(ARGV[i]) do
  i = i + 1
  counts[#counts + 1] = {ARGV[i], redis.call('SCARD', vp .. ARGV[i])}
end
local members = {}
for k = i + 1, #ARGV do
  members[#members + 1] = {ARGV[k], redis.call('SMEMBERS', vp .. ARGV[k])}
end
return {1, meta[1], meta[2], meta[3], redis.call('GET', KEYS[2]), records, counts, members}
