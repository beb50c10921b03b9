--[[
  recordSlackMessage: remember the DM status message of a session (its `D…`
  channel and `ts`), unless one is already recorded: the first one posted
  stays the one that is edited.
  ARGV: prefix, sessionId, channel, ts, ttlSeconds
  Returns: {channel, ts} as recorded
]]
local key = ARGV[1] .. 'slack-message:' .. ARGV[2]
local current = redis.call('HMGET', key, 'channel', 'ts')
if current[1] and current[2] then return current end
redis.call('HSET', key, 'channel', ARGV[3], 'ts', ARGV[4])
redis.call('EXPIRE', key, tonumber(ARGV[5]))
return {ARGV[3], ARGV[4]}
