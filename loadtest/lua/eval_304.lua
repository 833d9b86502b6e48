-- GET /v1/eval revalidations: the paths of eval_repeat.lua, each with the
-- ETag it was answered with (PARAMS.etags), so every answer is a 304. Built
-- once at init like eval_repeat.lua; `request()` returns the next string.
local REQS, N

function prepare()
  REQS = prebuilt(PARAMS.paths, PARAMS.etags)
  N = #REQS
end

function request()
  counter = counter + 1
  return REQS[counter % N + 1]
end
