-- Reads a session's state in one consistent snapshot.
-- KEYS: meta, session, questions.
-- ARGV: voters key prefix, viewer id ('' for none), then question ids whose voters are wanted.
-- Returns nil when the session does not exist, else
--   {seq, version, next_question, session JSON,
--    {{id, record JSON, votes, viewer voted 0|1}, ...},
--    {{id, {voter, ...}}, ...}}
local meta = redis.call('HMGET', KEYS[1], 'seq', 'version', 'next_question')
if not meta[1] then
  return nil
end
local vp = ARGV[1]
local viewer = ARGV[2]
local questions = {}
local records = redis.call('HGETALL', KEYS[3])
for i = 1, #records, 2 do
  local voters = vp .. records[i]
  local voted = 0
  if viewer ~= '' then
    voted = redis.call('SISMEMBER', voters, viewer)
  end
  questions[#questions + 1] = {records[i], records[i + 1], redis.call('SCARD', voters), voted}
end
local members = {}
for i = 3, #ARGV do
  members[#members + 1] = {ARGV[i], redis.call('SMEMBERS', vp .. ARGV[i])}
end
return {meta[1], meta[2], meta[3], redis.call('GET', KEYS[2]), questions, members}
