-- wrk script: POST a new lead on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"email": "bench%d@example.com", "name": "Bench %d"}', n, n))
end
