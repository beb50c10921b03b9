--[[
  takeHint: reveal the next hint, counting it, never past the last one.
  ARGV: prefix, sessionId, totalHints
  Returns: the 1-based index of the hint to show, or false when none is left
]]
local key = ARGV[1] .. 'session:' .. ARGV[2]
local used = tonumber(redis.call('HGET', key, 'hintsUsed') or '0')
if used >= tonumber(ARGV[3]) then return false end
return redis.call('HINCRBY', key, 'hintsUsed', 1)
