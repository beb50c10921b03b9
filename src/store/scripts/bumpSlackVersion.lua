--[[
  bumpSlackVersion: count one change to show in a session's Slack status
  message, and say whether a status job must be queued for it.

  The queued mark (`slack-status-queued:<sid>`) is set while a status job
  waits to start; that job renders whatever is latest, so a change made
  meanwhile needs no job of its own. The mark reads 'queued' for a job that
  runs as soon as the queue lets it, 'deferred' for one held back because it
  would only move the student's place in line (see startSlackStatusRun.lua).
  A change of state (served, ended, …) does not wait behind a deferred job:
  it turns the mark back to 'queued' and queues a job that runs at once.

  ARGV: prefix, sessionId, markMs, ttlSeconds, change ('state' | 'position')
  Returns: {version, 1 queue a job | 0 coalesced}
]]
local p, sid, markMs, ttl, change = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local key = p .. 'slack-message:' .. sid
local mark = p .. 'slack-status-queued:' .. sid
local version = redis.call('HINCRBY', key, 'version', 1)
redis.call('EXPIRE', key, ttl)
if redis.call('SET', mark, 'queued', 'PX', markMs, 'NX') then return {version, 1} end
if change == 'state' and redis.call('GET', mark) == 'deferred' then
  redis.call('SET', mark, 'queued', 'PX', markMs)
  return {version, 1}
end
return {version, 0}
