--[[
  releaseCheckLock: drop a session's running-check mark, but only if the
  caller still holds it (one that expired and was taken by another check stays
  theirs).
  ARGV: prefix, sessionId, token
  Returns: 1 released | 0 not held by this token
]]
local key = ARGV[1] .. 'check-lock:' .. ARGV[2]
if redis.call('GET', key) == ARGV[3] then return redis.call('DEL', key) end
return 0
