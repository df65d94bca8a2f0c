-- Appends one `votes` event with the counts changed since the last one, if any is public.
-- KEYS: meta, qstate, dirty, events. ARGV: voters key prefix, history, audience JSON, least ms
-- between two `votes` events of the session.
-- Returns the event's seq, 0 when nothing was due, -1 when the session does not exist.
-- Every node flushes on its own timer; the session's last flush (`vf` in meta, Redis clock)
-- keeps the events to one per interval whatever the number of nodes. What is not flushed stays
-- dirty for the next flush of any node.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[1], 'vf') or '0')
if now - last < tonumber(ARGV[4]) then
  return 0
end
local dirty = redis.call('SMEMBERS', KEYS[3])
if #dirty == 0 then
  return 0
end
redis.call('DEL', KEYS[3])
local ids = {}
for _, q in ipairs(dirty) do
  local state = redis.call('HGET', KEYS[2], q)
  if state == 'o' or state == 'p' then
    ids[#ids + 1] = tonumber(q)
  end
end
if #ids == 0 then
  return 0
end
table.sort(ids)
local parts = {}
for k, q in ipairs(ids) do
  local id = string.format('%d', q)
  parts[k] = '{"id":' .. id .. ',"votes":' .. redis.call('SCARD', ARGV[1] .. id) .. '}'
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'vf', string.format('%d', now))
local s = string.format('%d', seq)
-- The same text as `Event::encode` makes for a `votes` event (a unit test checks it).
local frame = '{"type":"votes","seq":' .. s .. ',"votes":[' .. table.concat(parts, ',') .. ']}'
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], s .. '-0', 'a', ARGV[3], 'f', frame)
return seq
