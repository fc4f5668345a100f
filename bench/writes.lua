-- wrk script: PATCH /users + DELETE /users mix (mode "mix") or POST /users with new ids
-- (mode "create"). usage: wrk ... -s bench/writes.lua URL -- MODE N SEG1,SEG2,... BASE
-- mix: random user 1..N, 1-3 random names from the list, half PATCH (some with
-- active_time), half DELETE. create: ids BASE + thread * 10^9 + counter, never reused.
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  mode = args[1]
  n = tonumber(args[2])
  segs = {}
  for s in string.gmatch(args[3] or "", "[^,]+") do table.insert(segs, s) end
  base = tonumber(args[4] or "0") + (id or 0) * 1000000000
  seq = 0
  math.randomseed(os.time() * 1000 + (id or 0))
  wrk.headers["Content-Type"] = "application/json"
end

local function names()
  local k = math.random(1, 3)
  local picked, out = {}, {}
  while #out < k do
    local s = segs[math.random(1, #segs)]
    if not picked[s] then picked[s] = true; table.insert(out, '"' .. s .. '"') end
  end
  return table.concat(out, ",")
end

function request()
  if mode == "create" then
    seq = seq + 1
    return wrk.format("POST", "/users", nil, string.format('{"id": %d}', base + seq))
  end
  local uid = math.random(1, n)
  if math.random() < 0.5 then
    local ttl = ""
    if math.random() < 0.3 then ttl = ', "active_time": 86400' end
    return wrk.format("PATCH", "/users", nil,
      string.format('{"id": %d, "segments": [%s]%s}', uid, names(), ttl))
  end
  return wrk.format("DELETE", "/users", nil,
    string.format('{"id": %d, "segments": [%s]}', uid, names()))
end

-- done(): the shared BENCH_JSON reporter, from the file beside this one.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
