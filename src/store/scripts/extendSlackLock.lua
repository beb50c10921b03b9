--[[
  extendSlackLock: keep holding a session's Slack lock while a delivery runs,
  but only if the caller still holds it.
  ARGV: prefix, sessionId, token, ttlMs
  Returns: 1 extended | 0 not held by this token (it lapsed)
]]
local key = ARGV[1] .. 'slack-lock:' .. ARGV[2]
if redis.call('GET', key) == ARGV[3] then return redis.call('PEXPIRE', key, tonumber(ARGV[4])) end
return 0
