-- wrk script: POST the JSON body in BENCH_BODY, with every "{n}" replaced by a running number.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local template = os.getenv("BENCH_BODY")
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, (template:gsub("{n}", tostring(n))))
end
