--[[
  takeKeyLink: hands out a one-time private-key download exactly once, even
  to concurrent takers, and leaves a tombstone so a second use can be told
  apart from a link that never existed or expired.

  ARGV: prefix, token, tombstoneSeconds
  Returns: {'key', privateKey} | {'taken'} | {'unknown'}
]]
local p, token, keep = ARGV[1], ARGV[2], ARGV[3]
local linkKey = p .. 'key-link:' .. token
local takenKey = p .. 'key-link-taken:' .. token
local value = redis.call('GET', linkKey)
if value then
  redis.call('DEL', linkKey)
  redis.call('SET', takenKey, '1', 'EX', keep)
  return {'key', value}
end
if redis.call('EXISTS', takenKey) == 1 then return {'taken'} end
return {'unknown'}
