-- GET /v1/eval revalidations: contexts 0..PARAMS.set_size-1 (built as in
-- eval_repeat.lua), each with the ETag it was answered with, so every answer
-- is a 304.
function request()
  counter = counter + 1
  local i = counter % PARAMS.set_size
  return wrk.format("GET", PARAMS.prefix .. b64url(context_json(i)),
    { ["If-None-Match"] = PARAMS.etags[i + 1] })
end
