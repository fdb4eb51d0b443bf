-- wrk script: POST the JSON body in BENCH_BODY, with every "{n}" replaced by a running number.
-- With BENCH_CLIENTS=N, each request also carries X-Forwarded-For from a pool of N addresses: many
-- visitors behind a trusted proxy (the edge must then run with HYDRA_EDGE_TRUSTED_HOPS=1).
-- With BENCH_IDEMPOTENCY=prefix, each request carries an Idempotency-Key of its own.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local template = os.getenv("BENCH_BODY")
local clients = tonumber(os.getenv("BENCH_CLIENTS") or "0")
local idempotency = os.getenv("BENCH_IDEMPOTENCY") or ""
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
request = function()
  n = n + 1
  local body = template:gsub("{n}", tostring(n))
  if clients == 0 and idempotency == "" then
    return wrk.format(nil, nil, nil, body)
  end
  local headers = {}
  for k, v in pairs(wrk.headers) do
    headers[k] = v
  end
  if idempotency ~= "" then
    headers["Idempotency-Key"] = string.format("%s-%d-%d", idempotency, thread_number or 0, n)
  end
  if clients == 0 then
    return wrk.format(nil, nil, headers, body)
  end
  local c = math.random(0, clients - 1)
  headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(c / 65536) % 256, math.floor(c / 256) % 256, c % 256)
  return wrk.format(nil, nil, headers, body)
end
