--[[
  deferSlackStatus: a status job is about to run for a session that waits in
  line and whose message already shows it waiting: its render can only move
  the student's place in line. If the message was edited less than the
  interval ago, hold the job back until the interval is over and mark it
  'deferred', so later position changes coalesce into it while a change of
  state queues a job of its own (bumpSlackVersion.lua). Atomic with the
  session's state, so a session served meanwhile is never held back.

  ARGV: prefix, sessionId, nowMs, intervalMs, markMs
  Returns: the time (ms) to run the job at | 0 run it now
]]
local p, sid, now, interval, markMs =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local key = p .. 'slack-message:' .. sid
local ts, renderedState, editedAt = unpack(redis.call('HMGET', key, 'ts', 'renderedState', 'editedAt'))
if not ts or renderedState ~= 'waiting' or not editedAt then return 0 end
if redis.call('HGET', p .. 'session:' .. sid, 'state') ~= 'waiting' then return 0 end
local due = tonumber(editedAt) + interval
if now >= due then return 0 end
redis.call('SET', p .. 'slack-status-queued:' .. sid, 'deferred', 'PX', markMs)
return due
