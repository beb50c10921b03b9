--[[
  setSessionFields: write plain fields of a live session. The state is read
  and the fields written in one step: a session that ends between a read and
  a write of its own (a student's stop while its preparation starts) must not
  take a field back, least of all its state, nor return to the expiry index.

  ARGV: prefix, sessionId, then field, value pairs
  Returns: 1 when written | 0 for an ended or unknown session
]]
local p, sid = ARGV[1], ARGV[2]
local key = p .. 'session:' .. sid
local state = redis.call('HGET', key, 'state')
if not state or state == 'ended' then return 0 end
if #ARGV < 4 then return 1 end
redis.call('HSET', key, unpack(ARGV, 3))
-- Only an active session has a place in the expiry index; a claimed or
-- preparing one gets its place when it becomes active (activateSession).
if state == 'active' then
  for i = 3, #ARGV, 2 do
    if ARGV[i] == 'expiresAt' then redis.call('ZADD', p .. 'expiry', ARGV[i + 1], sid) end
  end
end
return 1
