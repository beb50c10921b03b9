--[[
  recordNodeVmis: note which VMI each node of an active session runs. The
  first uid seen for a node is its identity; a uid never seen before, later,
  means the VM was replaced (its containerDisk is fresh, the student's work on
  it is gone): that restart is appended once, whichever replica sees it first.
  A uid seen before is old news (a replica whose watch lags), never a restart.
  All of an env's nodes in one call: one round trip per look, not one a node.

  ARGV: prefix, sessionId, envId, at (ms), then node, vmiUid pairs
  Returns: the nodes whose restart this call recorded (empty for none)
]]
local p, sid, envId, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p .. 'session:' .. sid
local fields = redis.call('HMGET', key, 'state', 'envId', 'nodeVmis', 'nodeRestarts')
if fields[1] ~= 'active' or fields[2] ~= envId then return {} end
local vmis = {}
if fields[3] then vmis = cjson.decode(fields[3]) end
local restarts = nil
local recorded = {}
local changed = false
for i = 5, #ARGV, 2 do
  local node, uid = ARGV[i], ARGV[i + 1]
  local seen = vmis[node] or {}
  local known = false
  for _, old in ipairs(seen) do
    if old == uid then
      known = true
      break
    end
  end
  if not known then
    changed = true
    seen[#seen + 1] = uid
    vmis[node] = seen
    if #seen > 1 then
      if not restarts then
        restarts = {}
        if fields[4] then restarts = cjson.decode(fields[4]) end
      end
      restarts[#restarts + 1] = { node = node, at = tonumber(at) }
      recorded[#recorded + 1] = node
    end
  end
end
if changed then redis.call('HSET', key, 'nodeVmis', cjson.encode(vmis)) end
if restarts then redis.call('HSET', key, 'nodeRestarts', cjson.encode(restarts)) end
return recorded
