-- Finishes responses transcoded from gRPC: swaps in the service's error body, applies the route's
-- success status the transcoder cannot express (201, 204, 304: the last two without a body), and
-- drops gRPC framing headers.
local GRPC_HEADERS = {"grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding",
                      "grpc-status-details-bin"}

function envoy_on_response(handle)
  local headers = handle:headers()
  for _, name in ipairs(GRPC_HEADERS) do
    headers:remove(name)
  end
  local status = headers:get("x-http-status")
  local error_body = headers:get("x-error-body")
  if status ~= nil then
    headers:remove("x-http-status")
  elseif headers:get(":status") == "200" then
    status = handle:metadata():get("success_status")
  end
  if status ~= nil then
    headers:replace(":status", status)
  end
  if error_body ~= nil then
    headers:remove("x-error-body")
    headers:replace("content-type", "application/json")
    handle:body(true):setBytes(error_body)
  elseif status == "204" or status == "304" then
    headers:remove("content-type")
    handle:body(true):setBytes("")
  elseif headers:get("content-type") == "text/event-stream" then
    -- A stream read as it arrives: no caching, and no buffering by proxies in front of the edge.
    headers:replace("cache-control", "no-cache")
    headers:replace("x-accel-buffering", "no")
  end
end
