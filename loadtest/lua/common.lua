-- Shared by every scenario (loadtest/run.py prepends a generated PARAMS table
-- and appends the scenario's request function).
--
-- Counts response statuses per thread and, when the run ends, prints one JSON
-- line the runner parses: requests, duration, errors, latency percentiles
-- (microseconds) and the status counts over all threads.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

counts = {}
counter = 0

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function init(args)
  math.randomseed(os.time() + thread_id)
end

if PARAMS.delay_ms then
  -- Paced load: each connection waits 0..2*delay_ms (uniform, mean delay_ms)
  -- after each answer, so the rate is about connections * 1000 / (delay_ms +
  -- latency) requests per second. The jitter keeps connections from firing
  -- in lockstep (wrk's timers tick in whole milliseconds).
  function delay()
    return math.random(0, 2 * PARAMS.delay_ms)
  end
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local ENC = {}
for k = 0, 63 do ENC[k] = B64:sub(k + 1, k + 1) end

-- Unpadded base64url, as the context segment of GET /v1/eval wants it.
function b64url(s)
  local out = {}
  for k = 1, #s, 3 do
    local a, b, c = s:byte(k, k + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = ENC[math.floor(v / 262144) % 64]
    out[#out + 1] = ENC[math.floor(v / 4096) % 64]
    if b then out[#out + 1] = ENC[math.floor(v / 64) % 64] end
    if c then out[#out + 1] = ENC[v % 64] end
  end
  return table.concat(out)
end

local COUNTRIES = { "NZ", "AU", "US", "GB", "DE", "CA" }
local PLANS = { "free", "pro", "enterprise" }

-- Context number i, the same shape as benches/common/mod.rs `contexts(n)`:
-- targetingKey, email, country, plan, seats, beta, platform, signup, app.version.
function context_json(i)
  local email
  if i % 7 == 0 then
    email = string.format("u%d@example.com", i)
  else
    email = string.format("u%d@mail.test", i)
  end
  local platform = "web"
  if i % 2 == 0 then platform = "ios" end
  return string.format(
    '{"targetingKey":"user-%d","email":"%s","country":"%s","plan":"%s","seats":%d,'
      .. '"beta":%s,"platform":"%s","signup":"2025-%02d-15T10:00:00Z","app":{"version":"2.%d.0"}}',
    i, email, COUNTRIES[i % 6 + 1], PLANS[i % 3 + 1], i % 40,
    tostring(i % 11 == 0), platform, 1 + i % 12, i % 5)
end

local function json_counts(merged)
  local parts = {}
  for status, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts") or {}
    for status, n in pairs(c) do merged[status] = (merged[status] or 0) + n end
  end
  local e = summary.errors
  io.write(string.format(
    'FLAGBELT_RESULT {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"statuses":%s}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), math.floor(latency.max),
    json_counts(merged)))
end
