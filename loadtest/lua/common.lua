-- Shared by every scenario (loadtest/run.py prepends a generated PARAMS table
-- and appends the scenario, which defines `prepare()` and `request()`).
--
-- The client's work per request is kept small and about equal in every phase:
-- every scenario builds its requests in `init` (once per wrk thread, before
-- wrk starts its clock) and `request()` returns a ready string (the random
-- scenario appends one short base64url piece). There is deliberately no
-- `response()` callback: with one, wrk builds a Lua table of every response's
-- headers and copies its body into Lua, which costs more for an eval answer
-- (a dozen headers, 3 KB) than for `/healthz`. The runner counts statuses
-- from the server's `/metrics` instead (and wrk itself counts 4xx/5xx).
--
-- When the run ends, `done` prints one JSON line the runner parses: requests,
-- duration, errors, latency percentiles (microseconds), and the CPU time wrk
-- spent during the load (process CPU at `done` minus the CPU at the start of
-- the first `init` and minus every thread's `init`).

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

counter = 0

function init(args)
  init_start = os.clock() -- process CPU seconds (all threads)
  math.randomseed(os.time() + thread_id)
  prepare()
  init_cpu = os.clock() - init_start
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

-- Ready requests for the scenarios that cycle through a fixed set: one
-- `wrk.format` per path (with `If-None-Match` when `etags` is given), built
-- once; `request()` only picks the next string.
function prebuilt(paths, etags)
  local reqs = {}
  for k, path in ipairs(paths) do
    local headers = nil
    if etags then headers = { ["If-None-Match"] = etags[k] } end
    reqs[k] = wrk.format("GET", path, headers)
  end
  return reqs
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local ENC = {}
for k = 0, 63 do ENC[k] = B64:sub(k + 1, k + 1) end

-- Unpadded base64url, as the context segment of GET /v1/eval wants it. Only
-- ever given a few bytes per request (the random scenario's suffix).
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

function done(summary, latency, requests)
  local first_start, inits = nil, 0
  for _, t in ipairs(threads) do
    local s = t:get("init_start")
    if s and (not first_start or s < first_start) then first_start = s end
    inits = inits + (t:get("init_cpu") or 0)
  end
  local load_cpu = os.clock() - (first_start or 0) - inits
  local e = summary.errors
  io.write(string.format(
    'FLAGBELT_RESULT {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"client_cpu_us":%d,"init_cpu_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), math.floor(latency.max),
    math.floor(load_cpu * 1e6), math.floor(inits * 1e6)))
end
