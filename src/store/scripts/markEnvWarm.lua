--[[
  markEnvWarm: an env finished booting. If a student waits for its flavor,
  the env goes straight to the head of the line (claimed); otherwise it
  joins the warm index, oldest first. Compare-and-set on the expected state,
  so a stale worker cannot resurrect an env that was torn down meanwhile.

  ARGV: prefix, envId, expectedState, now
  Returns: {0} not moved | {1} warm | {1, sessionId} served a waiter
]]
local p, envId, expected, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local envKey = p .. 'env:' .. envId
local state = redis.call('HGET', envKey, 'state')
if state ~= expected then return {0} end
local flavor = redis.call('HGET', envKey, 'flavor')
local lineKey = p .. 'line:' .. flavor
while true do
  local sid = redis.call('LPOP', lineKey)
  if not sid then break end
  local sessionKey = p .. 'session:' .. sid
  if redis.call('HGET', sessionKey, 'state') == 'waiting' then
    redis.call('SMOVE', p .. 'state:' .. flavor .. ':' .. state, p .. 'state:' .. flavor .. ':claimed', envId)
    redis.call('HSET', envKey, 'state', 'claimed', 'sessionId', sid, 'updatedAt', now)
    redis.call('HSET', sessionKey, 'state', 'claimed', 'envId', envId, 'claimedAt', now)
    return {1, sid}
  end
end
redis.call('SMOVE', p .. 'state:' .. flavor .. ':' .. state, p .. 'state:' .. flavor .. ':warm', envId)
redis.call('HSET', envKey, 'state', 'warm', 'updatedAt', now)
redis.call('ZADD', p .. 'warm:' .. flavor, now, envId)
return {1}
