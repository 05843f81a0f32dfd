-- GCRA (generic cell rate algorithm) for one key, with Redis server time so
-- replicas' clocks never matter. KEYS[1]: the bucket. ARGV[1]: emission
-- interval in microseconds (per / requests). ARGV[2]: burst (bucket size).
-- Returns {allowed, remaining, retry_after_us, reset_after_us}.
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tolerance = interval * burst

local tat = tonumber(redis.call("GET", key))
if tat == nil or tat < now then
  tat = now
end

local new_tat = tat + interval
local diff = now - (new_tat - tolerance)
if diff < 0 then
  return {0, 0, -diff, tat - now}
end

-- Every key expires when its bucket would be full again: no immortal keys.
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call("SET", key, string.format("%d", new_tat), "PX", ttl_ms)
return {1, math.floor(diff / interval), 0, new_tat - now}
