-- Casts or takes back one vote.
-- KEYS: meta, qstate, voters of the question, dirty. ARGV: question id, user id, 1 (vote) | 0.
-- Returns the head seq, or -1 no session, -2 ended, -3 no such question, -4 not open for votes,
-- -5 hidden (not public: a voter is told it does not exist, as SessionData::apply does).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return -1
end
if state == 'ended' then
  return -2
end
local q = redis.call('HGET', KEYS[2], ARGV[1])
if not q then
  return -3
end
if ARGV[3] == '1' then
  if q ~= 'o' then
    return q == 'h' and -5 or -4
  end
  if redis.call('SADD', KEYS[3], ARGV[2]) == 1 then
    redis.call('SADD', KEYS[4], ARGV[1])
  end
elseif redis.call('SREM', KEYS[3], ARGV[2]) == 1 then
  redis.call('SADD', KEYS[4], ARGV[1])
elseif q ~= 'o' then
  -- Taking back a vote is always harmless; only a missing one on a closed question is refused.
  return q == 'h' and -5 or -4
end
return tonumber(redis.call('HGET', KEYS[1], 'seq'))
