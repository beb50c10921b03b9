--[[
  admitSignedRequest: the front door's checks of one signed request in one
  round trip: mark its signature seen (a replay is refused), and count it
  against its sender's sliding window of requests (rate limit).
  ARGV: prefix, seenWhat, seenTtlSeconds, rateWhat ('' to count nothing),
        windowMs, nowMs, member (unique per request)
  Returns: {1, count} admitted (count 0 when nothing was counted) |
           {0, 0} a replay (nothing counted)
]]
local seenKey = ARGV[1] .. 'seen:' .. ARGV[2]
if not redis.call('SET', seenKey, '1', 'EX', tonumber(ARGV[3]), 'NX') then return {0, 0} end
if ARGV[4] == '' then return {1, 0} end
local rateKey = ARGV[1] .. 'rate:' .. ARGV[4]
local now = tonumber(ARGV[6])
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', rateKey, '-inf', now - window)
redis.call('ZADD', rateKey, now, ARGV[7])
local count = redis.call('ZCARD', rateKey)
redis.call('PEXPIRE', rateKey, window)
return {1, count}
