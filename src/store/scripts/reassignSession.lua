--[[
  reassignSession: the lab's setup failed on the session's env. That env is
  marked failed (it will be torn down); the session takes the oldest warm env
  of its flavor, or goes back to the HEAD of the line, keeping its place.

  ARGV: prefix, sessionId, badEnvId, now
  Returns: {newEnvId} | {''} when queued again | {} when the session ended
]]
local p, sid, bad, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sessionKey = p .. 'session:' .. sid
local state = redis.call('HGET', sessionKey, 'state')
if not state or state == 'ended' then return {} end
local flavor = redis.call('HGET', sessionKey, 'flavor')
local badKey = p .. 'env:' .. bad
local badState = redis.call('HGET', badKey, 'state')
if badState then
  redis.call('SMOVE', p .. 'state:' .. flavor .. ':' .. badState, p .. 'state:' .. flavor .. ':failed', bad)
  if badState == 'warm' then redis.call('ZREM', p .. 'warm:' .. flavor, bad) end
  redis.call('HSET', badKey, 'state', 'failed', 'updatedAt', now)
  redis.call('HDEL', badKey, 'sessionId')
end
redis.call('HINCRBY', sessionKey, 'moves', 1)
-- A slow setup on the env left behind says nothing about the next one.
redis.call('HDEL', sessionKey, 'setupSlow')
local warmKey = p .. 'warm:' .. flavor
local oldest = redis.call('ZRANGE', warmKey, 0, 0)
local envId = oldest[1]
if envId then
  redis.call('ZREM', warmKey, envId)
  redis.call('SMOVE', p .. 'state:' .. flavor .. ':warm', p .. 'state:' .. flavor .. ':claimed', envId)
  redis.call('HSET', p .. 'env:' .. envId, 'state', 'claimed', 'sessionId', sid, 'updatedAt', now)
  redis.call('HSET', sessionKey, 'state', 'claimed', 'envId', envId, 'claimedAt', now)
  return {envId}
end
redis.call('HSET', sessionKey, 'state', 'waiting')
redis.call('HDEL', sessionKey, 'envId', 'claimedAt')
redis.call('LPUSH', p .. 'line:' .. flavor, sid)
return {''}
