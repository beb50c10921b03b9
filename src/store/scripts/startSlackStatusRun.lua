--[[
  startSlackStatusRun: a status job is about to run. If the session waits in
  line, its message already shows it waiting and was edited less than the
  interval ago, the job's render can only move the student's place in line:
  hold it back until the interval is over and mark it 'deferred', so later
  position changes coalesce into it while a change of state queues a job of
  its own (bumpSlackVersion.lua). Otherwise the run starts now and clears the
  queued mark: from here on it reads the latest state, so a later change
  queues a job of its own. Atomic with the session's state, so a session
  served meanwhile is never held back.

  ARGV: prefix, sessionId, nowMs, intervalMs (0: never hold back), markMs
  Returns: the time (ms) to run the job at | 0 run it now (mark cleared)
]]
local p, sid, now, interval, markMs =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local key = p .. 'slack-message:' .. sid
local mark = p .. 'slack-status-queued:' .. sid
local ts, renderedState, editedAt = unpack(redis.call('HMGET', key, 'ts', 'renderedState', 'editedAt'))
local due = 0
if interval > 0 and ts and renderedState == 'waiting' and editedAt
  and redis.call('HGET', p .. 'session:' .. sid, 'state') == 'waiting' then
  due = tonumber(editedAt) + interval
end
if now < due then
  redis.call('SET', mark, 'deferred', 'PX', markMs)
  return due
end
redis.call('DEL', mark)
return 0
