--[[
  setEnvState: move an env to a new state, optionally only from an expected
  one (compare-and-set). Keeps the per-flavor state sets and the warm index
  in step.

  ARGV: prefix, envId, newState, expectedState ('' = any), now
  Returns: 1 moved | 0 not (missing, or not in the expected state)
]]
local p, envId, to, expected, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local envKey = p .. 'env:' .. envId
local state = redis.call('HGET', envKey, 'state')
if not state then return 0 end
if expected ~= '' and state ~= expected then return 0 end
if state == to then return 1 end
local flavor = redis.call('HGET', envKey, 'flavor')
redis.call('SMOVE', p .. 'state:' .. flavor .. ':' .. state, p .. 'state:' .. flavor .. ':' .. to, envId)
if state == 'warm' then redis.call('ZREM', p .. 'warm:' .. flavor, envId) end
if to == 'warm' then redis.call('ZADD', p .. 'warm:' .. flavor, now, envId) end
redis.call('HSET', envKey, 'state', to, 'updatedAt', now)
return 1
