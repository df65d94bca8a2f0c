-- Creates a session unless its id exists.
-- KEYS: meta, session. ARGV: session JSON, state.
-- Returns 1 when created, 0 when the id exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'seq', 0, 'version', 0, 'state', ARGV[2], 'next_question', 1)
return 1
