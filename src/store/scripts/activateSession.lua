--[[
  activateSession: the lab is set up; let the student in. Only a claimed or
  preparing session on the same env becomes active (a session that ended
  while its setup ran stays ended).

  ARGV: prefix, sessionId, envId, readyAt, expiresAt, connection
  Returns: 1 | 0
]]
local p, sid, envId, readyAt, expiresAt, connection = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local sessionKey = p .. 'session:' .. sid
local fields = redis.call('HMGET', sessionKey, 'state', 'envId')
if (fields[1] ~= 'claimed' and fields[1] ~= 'preparing') or fields[2] ~= envId then return 0 end
redis.call('HSET', sessionKey, 'state', 'active', 'readyAt', readyAt, 'expiresAt', expiresAt,
  'connection', connection)
redis.call('ZADD', p .. 'expiry', expiresAt, sid)
return 1
