-- GET /v1/eval cycling through a small set of contexts: PARAMS.paths, the
-- ready paths of contexts 0..set_size-1 (built by run.py), one `wrk.format`
-- each at init; `request()` returns the next string as is.
local REQS, N

function prepare()
  REQS = prebuilt(PARAMS.paths)
  N = #REQS
end

function request()
  counter = counter + 1
  return REQS[counter % N + 1]
end
