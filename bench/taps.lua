-- wrk script for bench/transit.py: POST pre-signed taps, each body once.
--   wrk -s bench/taps.lua URL -- BODIES_FILE TOKEN THREADS
-- Thread k sends lines k, k+THREADS, ... of BODIES_FILE (one JSON tap per line). A body sent
-- twice would be a replay (a cheap stored answer), so running out is counted, and so is any
-- answer that is not an accepted tap; bench/transit.py rejects a run with either.
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, token, count = args[1], args[2], tonumber(args[3])
  bodies = {}
  local i = 0
  for line in io.lines(path) do
    if i % count == id - 1 then
      table.insert(bodies, line)
    end
    i = i + 1
  end
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
  sent, bad, exhausted = 0, 0, 0
end

function request()
  sent = sent + 1
  if sent > #bodies then
    exhausted = exhausted + 1
  end
  return wrk.format("POST", nil, headers, bodies[(sent - 1) % #bodies + 1])
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"result":%s*"accepted"')
      or string.find(body, '"replayed":%s*true') then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local b, e = 0, 0
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    e = e + t:get("exhausted")
  end
  io.write(string.format("BENCH bad=%d exhausted=%d\n", b, e))
end
