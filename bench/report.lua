-- Loaded by reads.lua and writes.lua: prints one line "BENCH_JSON {...}" with
-- throughput and latency percentiles (µs), which bench/run.py parses.
-- With --key-scope, every request carries the key bench/run.py made (docs/keys.md).
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization then
  wrk.headers["Authorization"] = authorization
end
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors_status": %d, "errors_socket": %d}\n',
    summary.requests, secs, summary.requests / secs, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout))
end
