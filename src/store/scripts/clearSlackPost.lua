--[[
  clearSlackPost: Slack refused a post of the status message (429, an error
  answer, no connection): nothing was posted, so drop the claim
  beginSlackPost made, but only if it is still this run's.
  ARGV: prefix, sessionId, token
  Returns: 1 cleared | 0 not this run's claim
]]
local key = ARGV[1] .. 'slack-message:' .. ARGV[2]
if redis.call('HGET', key, 'postToken') ~= ARGV[3] then return 0 end
redis.call('HDEL', key, 'postToken', 'postingSince', 'postingUntil')
return 1
