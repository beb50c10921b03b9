--[[
  endSession: a session ends (released, expired, failed, cancelled). It
  leaves the student's live set, the waiting line and the expiry index; its
  env (if any) moves to releasing. Idempotent: ending an ended session
  returns nothing.

  ARGV: prefix, sessionId, reason, now, detail (why, may be empty)
  Returns: {} if already ended or unknown | {student, labId, envId or ''}
]]
local p, sid, reason, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sessionKey = p .. 'session:' .. sid
local state = redis.call('HGET', sessionKey, 'state')
if not state or state == 'ended' then return {} end
local fields = redis.call('HMGET', sessionKey, 'student', 'labId', 'flavor', 'envId')
local student, labId, flavor, envId = fields[1], fields[2], fields[3], fields[4]
redis.call('HSET', sessionKey, 'state', 'ended', 'endedReason', reason, 'endedAt', now)
if ARGV[5] and ARGV[5] ~= '' then redis.call('HSET', sessionKey, 'endedDetail', ARGV[5]) end
redis.call('SREM', p .. 'student:' .. student, sid)
redis.call('LREM', p .. 'line:' .. flavor, 0, sid)
redis.call('ZREM', p .. 'expiry', sid)
-- Ended sessions stay readable for a week (status, audit), then go.
redis.call('EXPIRE', sessionKey, 7 * 86400)
if envId and envId ~= '' then
  local envKey = p .. 'env:' .. envId
  local envState = redis.call('HGET', envKey, 'state')
  if envState and envState ~= 'releasing' and envState ~= 'deleted' then
    local envFlavor = redis.call('HGET', envKey, 'flavor')
    redis.call('SMOVE', p .. 'state:' .. envFlavor .. ':' .. envState,
      p .. 'state:' .. envFlavor .. ':releasing', envId)
    if envState == 'warm' then redis.call('ZREM', p .. 'warm:' .. envFlavor, envId) end
    redis.call('HSET', envKey, 'state', 'releasing', 'updatedAt', now)
  end
else
  envId = ''
end
return {student, labId, envId}
