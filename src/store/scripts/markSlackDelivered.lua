--[[
  markSlackDelivered: record that the status message now shows every change
  up to `version` (never moving backwards), a digest of what it shows, the
  session state it shows, and, when this run called Slack, when (the line
  position's edit interval counts from there).
  ARGV: prefix, sessionId, version, digest, ttlSeconds, renderedState, editedAt ('' if no call)
  Returns: 1 recorded | 0 a newer version was already recorded
]]
local key = ARGV[1] .. 'slack-message:' .. ARGV[2]
local rendered = tonumber(redis.call('HGET', key, 'rendered') or '0')
if rendered > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', key, 'rendered', ARGV[3], 'digest', ARGV[4], 'renderedState', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', key, 'editedAt', ARGV[7]) end
redis.call('EXPIRE', key, tonumber(ARGV[5]))
return 1
