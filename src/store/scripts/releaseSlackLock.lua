--[[
  releaseSlackLock: drop a session's Slack lock, but only if the caller still
  holds it (a lock that expired and was taken by another replica stays theirs).
  ARGV: prefix, sessionId, token
  Returns: 1 released | 0 not held by this token
]]
local key = ARGV[1] .. 'slack-lock:' .. ARGV[2]
if redis.call('GET', key) == ARGV[3] then return redis.call('DEL', key) end
return 0
