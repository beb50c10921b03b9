--[[
  setSessionFields: write plain fields of a live session. The state is read
  and the fields written in one step: a session that ends between a read and
  a write of its own (a student's stop while its preparation starts) must not
  take a field back, least of all its state, nor return to the expiry index.

  ARGV: prefix, sessionId, expiresAt (ms, '' when not written), then field,
  value pairs (expiresAt among them when written)
  Returns: 1 when written | 0 for an ended or unknown session
]]
local p, sid, expiresAt = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'session:' .. sid
local state = redis.call('HGET', key, 'state')
if not state or state == 'ended' then return 0 end
if #ARGV > 3 then redis.call('HSET', key, unpack(ARGV, 4)) end
-- Only an active session has a place in the expiry index; a claimed or
-- preparing one gets its place when it becomes active (activateSession).
if expiresAt ~= '' and state == 'active' then redis.call('ZADD', p .. 'expiry', expiresAt, sid) end
return 1
