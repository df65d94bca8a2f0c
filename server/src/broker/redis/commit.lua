-- Stores the outcome of one command if nothing else changed the session since it was read, and
-- appends the command's events to the log.
-- KEYS: meta, session, questions, qstate, dirty, events, viewers, changed.
-- ARGV: 1 version read, 2 voters key prefix, 3 history, 4 session JSON ('' when unchanged),
--       5 state, 6 next_question,
--       then M, and M x (merged question, question merged into), in order,
--       then R, and R x (id, record JSON, qstate code; both '' for a removed question),
--       then C, and C x (id, votes the events carry),
--       then E, and E x (audience JSON, frame before the seq, frame after the seq).
-- Returns {1, head} when stored, {0, 0} when the version moved (read again), {-1, 0} when the
-- session does not exist.
local meta = KEYS[1]
local version = redis.call('HGET', meta, 'version')
if not version then
  return {-1, 0}
end
if version ~= ARGV[1] then
  return {0, 0}
end
local vp = ARGV[2]
local i = 8
-- The voters move here, not from what was read: a vote cast since then moves too.
for _ = 1, tonumber(ARGV[7]) do
  redis.call('SUNIONSTORE', vp .. ARGV[i + 1], vp .. ARGV[i + 1], vp .. ARGV[i])
  redis.call('DEL', vp .. ARGV[i])
  i = i + 2
end
local records = tonumber(ARGV[i])
local written = tonumber(version) + 1
i = i + 1
for _ = 1, records do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
    redis.call('SREM', KEYS[5], ARGV[i])
    redis.call('DEL', vp .. ARGV[i])
  else
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
  end
  -- So that other nodes' cached copies read this record again, and only this one.
  redis.call('ZADD', KEYS[8], written, ARGV[i])
  i = i + 3
end
-- An event that carries a count which votes since the read have changed gets corrected by the
-- next `votes` event.
local checks = tonumber(ARGV[i])
i = i + 1
for _ = 1, checks do
  if redis.call('SCARD', vp .. ARGV[i]) ~= tonumber(ARGV[i + 1]) then
    redis.call('SADD', KEYS[5], ARGV[i])
  end
  i = i + 2
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4])
end
redis.call('HSET', meta, 'version', written, 'state', ARGV[5],
  'next_question', ARGV[6])
local seq = tonumber(redis.call('HGET', meta, 'seq'))
local events = tonumber(ARGV[i])
i = i + 1
for _ = 1, events do
  seq = seq + 1
  local s = string.format('%d', seq)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], s .. '-0',
    'a', ARGV[i], 'f', ARGV[i + 1] .. s .. ARGV[i + 2])
  i = i + 3
end
redis.call('HSET', meta, 'seq', seq)
return {1, seq}
