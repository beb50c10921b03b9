--[[
  markSlackDelivered: record that the status message now shows every change
  up to `version` (never moving backwards), and a digest of what it shows.
  ARGV: prefix, sessionId, version, digest, ttlSeconds
  Returns: 1 recorded | 0 a newer version was already recorded
]]
local key = ARGV[1] .. 'slack-message:' .. ARGV[2]
local rendered = tonumber(redis.call('HGET', key, 'rendered') or '0')
if rendered > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', key, 'rendered', ARGV[3], 'digest', ARGV[4])
redis.call('EXPIRE', key, tonumber(ARGV[5]))
return 1
