-- GET /v1/eval with a new context on every request (a unique targetingKey,
-- which the rollouts read, so no two answers or ETags are alike).
function request()
  counter = counter + 1
  local i = thread_id * 1000000000 + counter
  return wrk.format("GET", PARAMS.prefix .. b64url(context_json(i)))
end
