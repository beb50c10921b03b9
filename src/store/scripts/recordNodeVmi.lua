--[[
  recordNodeVmi: note which VMI a node of an active session runs. The first
  uid seen for a node is its identity; a uid never seen before, later, means
  the VM was replaced (its containerDisk is fresh, the student's work on it is
  gone): that restart is appended once, whichever replica sees it first. A uid
  seen before is old news (a replica whose watch lags), never a restart.

  ARGV: prefix, sessionId, envId, node, vmiUid, at (ms)
  Returns: 1 when a restart was recorded, else 0
]]
local p, sid, envId, node, uid, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = p .. 'session:' .. sid
local fields = redis.call('HMGET', key, 'state', 'envId', 'nodeVmis', 'nodeRestarts')
if fields[1] ~= 'active' or fields[2] ~= envId then return 0 end
local vmis = {}
if fields[3] then vmis = cjson.decode(fields[3]) end
local seen = vmis[node] or {}
for _, known in ipairs(seen) do
  if known == uid then return 0 end
end
local first = #seen == 0
seen[#seen + 1] = uid
vmis[node] = seen
redis.call('HSET', key, 'nodeVmis', cjson.encode(vmis))
if first then return 0 end
local restarts = {}
if fields[4] then restarts = cjson.decode(fields[4]) end
restarts[#restarts + 1] = { node = node, at = tonumber(at) }
redis.call('HSET', key, 'nodeRestarts', cjson.encode(restarts))
return 1
