-- Records whether one node's relay has a session's publisher sending, and returns the URL of
-- the node whose publisher started last (the expert's newest connection), or nil when none has. KEYS: video. ARGV: node id ('' only reads), URL ('' = not
-- live), report lifetime ms, key lifetime s. Entries: node id -> EXPIRES_MS|SINCE_MS|URL, on the
-- Redis clock, so nodes' clocks need not agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  if ARGV[2] == '' then
    redis.call('HDEL', KEYS[1], ARGV[1])
  else
    local since = now
    local old = redis.call('HGET', KEYS[1], ARGV[1])
    if old then
      local e, s, u = string.match(old, '^(%d+)|(%d+)|(.*)$')
      if e and tonumber(e) > now and u == ARGV[2] then since = tonumber(s) end
    end
    redis.call('HSET', KEYS[1], ARGV[1],
      string.format('%d', now + tonumber(ARGV[3])) .. '|' .. string.format('%d', since) .. '|' .. ARGV[2])
  end
end
local all = redis.call('HGETALL', KEYS[1])
local best, best_since = false, -1
for i = 1, #all, 2 do
  local e, s, u = string.match(all[i + 1], '^(%d+)|(%d+)|(.*)$')
  if e and tonumber(e) > now then
    if tonumber(s) > best_since then best, best_since = u, tonumber(s) end
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if #all > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return best
