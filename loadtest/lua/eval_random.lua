-- GET /v1/eval with a context never seen before on every request: a unique
-- targetingKey (the rollouts read it, so no two answers or ETags are alike
-- and no cache can hit), the other attributes cycling through a pool.
--
-- run.py writes the pool to PARAMS.pool_file, one line per context j: the
-- path up to and including the base64url of the context's JSON *without its
-- end*, `{"email":...,"app":{"version":"2.1.0"},  "targetingKey":"user-`,
-- padded with spaces to a multiple of 3 bytes. Base64 of a 3-byte-aligned
-- prefix followed by base64 of the rest is base64 of the whole, so a request
-- only adds the encoding of its suffix `<12-digit number>"}`: four 3-digit
-- groups (each 4 base64 characters, from a table of 1000 built here) and the
-- encoding of `"}`. No per-request encoding loop, one string concatenation.
--
-- The number is PARAMS.key_base + thread_id * PARAMS.thread_stride + counter
-- (zero-padded): run.py gives every wrk run its own key_base, so no key
-- repeats within a server's lifetime either.
local HEAD, TAIL, N, BASE = {}, nil, 0, 0
local DIGITS3 = {} -- DIGITS3[k + 1] = base64url of string.format("%03d", k)
local QUOTE_BRACE = b64url('"}')

function request()
  counter = counter + 1
  local n = BASE + counter
  return HEAD[counter % N + 1]
    .. DIGITS3[math.floor(n / 1e9) % 1000 + 1] .. DIGITS3[math.floor(n / 1e6) % 1000 + 1]
    .. DIGITS3[math.floor(n / 1e3) % 1000 + 1] .. DIGITS3[n % 1000 + 1]
    .. QUOTE_BRACE .. TAIL
end

function prepare()
  for k = 0, 999 do DIGITS3[k + 1] = b64url(string.format("%03d", k)) end
  -- "GET /@ HTTP/1.1\r\nHost: ...\r\n\r\n", split around the path.
  local template = wrk.format("GET", "/@")
  local at = template:find("/@", 1, true)
  local start = template:sub(1, at - 1)
  TAIL = template:sub(at + 2)
  for line in io.lines(PARAMS.pool_file) do
    HEAD[#HEAD + 1] = start .. line
  end
  N = #HEAD
  BASE = PARAMS.key_base + thread_id * PARAMS.thread_stride
  assert(BASE + 1e9 < 1e12, "key numbers must stay below 12 digits")
  -- A few real requests (their numbers are then used up) for run.py to decode.
  for _ = 1, PARAMS.samples do
    io.write(string.format("FLAGBELT_SAMPLE %d %s\n", (counter + 1) % N,
      request():match("^GET (%S+) HTTP/1%.1\r\n")))
  end
end
