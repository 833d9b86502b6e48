-- GET /healthz: the baseline (no ruleset, no evaluation).
local req = nil
function request()
  if not req then req = wrk.format("GET", "/healthz") end
  return req
end
