-- GET /v1/eval cycling through contexts 0..PARAMS.set_size-1. The request is
-- built exactly as in eval_random.lua (same client cost); only the set of
-- contexts differs.
function request()
  counter = counter + 1
  local i = counter % PARAMS.set_size
  return wrk.format("GET", PARAMS.prefix .. b64url(context_json(i)))
end
