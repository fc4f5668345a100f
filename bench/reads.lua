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

-- done(): the shared BENCH_JSON reporter, from the file beside this one.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
