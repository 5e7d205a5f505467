-- wrk script: POSTs the JSON body in the file named by WRK_BODY (GET when
-- unset) and prints one JSON line with throughput and latency in µs.
local body_file = os.getenv("WRK_BODY")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"rps":%.1f,"mean_us":%.1f,"p50_us":%d,"p99_us":%d,"errors":%d}\n',
    summary.requests, summary.requests / secs, latency.mean,
    latency:percentile(50), latency:percentile(99), errors))
end
