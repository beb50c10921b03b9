--[[
  requestSession: one atomic step for "student S wants lab L".
  Returns the existing session for a request id the same student already
  used; refuses a request id that belongs to another student's session (the
  key stays `request:<id>`, so records written before this check still read,
  and ownership is the session's own `student` field); refuses when the
  student already holds the maximum of live sessions; otherwise claims the
  oldest warm env of the flavor or joins the flavor's FIFO line.

  KEYS: none (all keys share the {prefix} hash tag, built from ARGV[1])
  ARGV: prefix, sessionId, student, labId, flavor, requestId, publicKey,
        maxPerStudent, now
  Returns: {'existing', id} | {'taken'} | {'limit', id...} | {'claimed', id, envId} |
           {'waiting', id, position}
]]
local p, sid, student, labId, flavor, requestId, publicKey, maxPer, now =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]

local requestKey = p .. 'request:' .. requestId
local existing = redis.call('GET', requestKey)
if existing then
  local owner = redis.call('HGET', p .. 'session:' .. existing, 'student')
  if owner == student then
    return {'existing', existing}
  elseif owner then
    return {'taken'}
  end
end

local studentKey = p .. 'student:' .. student
local live = {}
for _, id in ipairs(redis.call('SMEMBERS', studentKey)) do
  local state = redis.call('HGET', p .. 'session:' .. id, 'state')
  if state and state ~= 'ended' then
    table.insert(live, id)
  else
    redis.call('SREM', studentKey, id)
  end
end
if #live >= maxPer then
  return {'limit', unpack(live)}
end

local sessionKey = p .. 'session:' .. sid
redis.call('HSET', sessionKey, 'id', sid, 'student', student, 'labId', labId, 'flavor', flavor,
  'requestId', requestId, 'publicKey', publicKey, 'createdAt', now, 'hintsUsed', 0, 'moves', 0)
redis.call('SET', requestKey, sid, 'EX', 86400)
redis.call('SADD', studentKey, sid)
redis.call('SADD', p .. 'sessions', sid)

local warmKey = p .. 'warm:' .. flavor
local oldest = redis.call('ZRANGE', warmKey, 0, 0)
local envId = oldest[1]
if envId then
  redis.call('ZREM', warmKey, envId)
  local envKey = p .. 'env:' .. envId
  redis.call('SMOVE', p .. 'state:' .. flavor .. ':warm', p .. 'state:' .. flavor .. ':claimed', envId)
  redis.call('HSET', envKey, 'state', 'claimed', 'sessionId', sid, 'updatedAt', now)
  redis.call('HSET', sessionKey, 'state', 'claimed', 'envId', envId, 'claimedAt', now)
  return {'claimed', sid, envId}
end

redis.call('HSET', sessionKey, 'state', 'waiting')
local position = redis.call('RPUSH', p .. 'line:' .. flavor, sid)
return {'waiting', sid, position}
