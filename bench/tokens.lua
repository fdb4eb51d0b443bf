-- wrk script: GET with each request's Authorization from the comma-separated BENCH_TOKENS, in turn
-- (many users, so no one user's plan limits what is measured).
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  tokens[#tokens + 1] = token
end
local n = 0
request = function()
  n = n + 1
  local headers = {}
  headers["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]
  return wrk.format("GET", nil, headers, nil)
end
