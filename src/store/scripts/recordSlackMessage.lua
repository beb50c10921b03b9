--[[
  recordSlackMessage: remember the DM status message of a session (its `D…`
  channel and `ts`). Unless `replace` is 1 (the recorded one is gone), one
  already recorded stays: the first one posted is the one that is edited.
  Either way a post is no longer pending: the claim of beginSlackPost is
  dropped in the same step, so no later run looks for a lost post.
  ARGV: prefix, sessionId, channel, ts, ttlSeconds, replace (1|0)
  Returns: {channel, ts} as recorded
]]
local key = ARGV[1] .. 'slack-message:' .. ARGV[2]
redis.call('HDEL', key, 'postToken', 'postingSince', 'postingUntil')
local current = redis.call('HMGET', key, 'channel', 'ts')
if ARGV[6] ~= '1' and current[1] and current[2] then return current end
redis.call('HSET', key, 'channel', ARGV[3], 'ts', ARGV[4])
redis.call('EXPIRE', key, tonumber(ARGV[5]))
return {ARGV[3], ARGV[4]}
