-- wrk script: POST /users/lookup with K random ids in 1..N per request.
-- usage: wrk -t2 -c32 -d10s -s bench/lookup.lua http://127.0.0.1:8080 -- N K
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  n = tonumber(args[1]) or 1000
  k = tonumber(args[2]) or 100
  math.randomseed(os.time() * 1000 + (id or 0))
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local ids = {}
  for i = 1, k do ids[i] = math.random(1, n) end
  return wrk.format("POST", "/users/lookup", nil, '{"ids":[' .. table.concat(ids, ",") .. ']}')
end

dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
