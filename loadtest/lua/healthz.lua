-- GET /healthz: the baseline (no ruleset, no evaluation). Built and returned
-- exactly like eval_repeat.lua's requests (a set of one), so the client's
-- cost per request is the same.
local REQS, N

function prepare()
  REQS = prebuilt({ "/healthz" })
  N = #REQS
end

function request()
  counter = counter + 1
  return REQS[counter % N + 1]
end
