-- wrk script: GET /users/{id} for random existing ids 1..N.
-- usage: wrk -t2 -c32 -d10s -s bench/reads.lua http://127.0.0.1:8080 -- N
-- done() prints one line "BENCH_JSON {...}" with throughput and latency percentiles (µs).
local counter = 1
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  n = tonumber(args[1]) or 1000
  math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
  return wrk.format("GET", "/users/" .. math.random(1, n))
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
