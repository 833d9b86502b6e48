-- POST /ofrep/v1/evaluate/flags (OFREP bulk evaluation, what OpenFeature
-- server-side providers send) with a server key and a context never seen
-- before on every request: body `{"context": {...}}` with a unique
-- targetingKey, the other attributes cycling through the pool of
-- eval_random.lua (the same 9,240 contexts).
--
-- run.py writes the pool to PARAMS.pool_file, one line per context j: the
-- body up to its unique part, `{"context":{"email":...,"app":{"version":
-- "2.1.0"},"targetingKey":"user-`. Every request's unique part is a fixed
-- 15 bytes, `<12-digit number>"}}`, so each context's body has one length
-- whatever the number: at init, one `wrk.format` per pool line (over the
-- line plus a placeholder suffix, so wrk computes the right Content-Length)
-- gives the whole request but its last 15 bytes. A request is that prebuilt
-- head plus four 3-digit groups (from a table of 1000) and `"}}`: one string
-- concatenation, as in eval_random.lua, no JSON or wrk.format at request
-- time.
--
-- The number is PARAMS.key_base + thread_id * PARAMS.thread_stride + counter
-- (zero-padded): run.py gives every wrk run its own key_base (one counter
-- with the GET runs), so no key repeats within a server's lifetime either.
local HEAD, N, BASE = {}, 0, 0
local DIGITS3 = {} -- DIGITS3[k + 1] = string.format("%03d", k)
local END = '"}}'

function request()
  counter = counter + 1
  local n = BASE + counter
  return HEAD[counter % N + 1]
    .. DIGITS3[math.floor(n / 1e9) % 1000 + 1] .. DIGITS3[math.floor(n / 1e6) % 1000 + 1]
    .. DIGITS3[math.floor(n / 1e3) % 1000 + 1] .. DIGITS3[n % 1000 + 1]
    .. END
end

function prepare()
  for k = 0, 999 do DIGITS3[k + 1] = string.format("%03d", k) end
  local placeholder = string.rep("0", 12) .. END
  for line in io.lines(PARAMS.pool_file) do
    local headers = {
      ["Authorization"] = "Bearer " .. PARAMS.key,
      ["Content-Type"] = "application/json",
    }
    local req = wrk.format("POST", PARAMS.path, headers, line .. placeholder)
    HEAD[#HEAD + 1] = req:sub(1, #req - #placeholder)
  end
  N = #HEAD
  BASE = PARAMS.key_base + thread_id * PARAMS.thread_stride
  assert(BASE + 1e9 < 1e12, "key numbers must stay below 12 digits")
  -- A few real requests, whole (their numbers are then used up), base64url
  -- encoded for run.py to decode, check and send to the server itself.
  for _ = 1, PARAMS.samples do
    local j = (counter + 1) % N
    io.write(string.format("FLAGBELT_SAMPLE %d %s\n", j, b64url(request())))
  end
end
