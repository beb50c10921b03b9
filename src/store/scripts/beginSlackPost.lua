--[[
  beginSlackPost: claim the first post of a session's DM status message, so
  that a second run of the delivery (a lapsed lock, another replica) never
  posts it twice. The claim (`postToken`, `postingSince`, `postingUntil`,
  Redis time in ms) lives in the session's slack-message hash until the `ts`
  is recorded (recordSlackMessage) or Slack refused the post (clearSlackPost).
  ARGV: prefix, sessionId, token, holdMs, ttlSeconds, lostTs ('' or the
        recorded ts of a message known to be gone)
  Returns:
    {'posted', channel, ts}   a status message is recorded: edit it instead
    {'in-flight', untilMs}    another run's post may still be answered until then
    {'begin', sinceMs}        this run may post; sinceMs ('' if none) is when an
                              earlier post began whose answer never came back
                              (Slack may hold it: look for it before posting)
]]
local key = ARGV[1] .. 'slack-message:' .. ARGV[2]
local h = redis.call('HMGET', key, 'channel', 'ts', 'postingSince', 'postingUntil')
if h[1] and h[2] and h[2] ~= ARGV[6] then return {'posted', h[1], h[2]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if h[4] and tonumber(h[4]) > now then return {'in-flight', h[4]} end
local earlier = h[3] or ''
redis.call('HSET', key, 'postToken', ARGV[3], 'postingSince', tostring(now),
  'postingUntil', tostring(now + tonumber(ARGV[4])))
redis.call('EXPIRE', key, tonumber(ARGV[5]))
return {'begin', earlier}
