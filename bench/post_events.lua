-- wrk script for bench/ingest.py: POST an Adobe purchase with a unique xdm._id per request.
--
--   wrk ... -s bench/post_events.lua URL -- TEMPLATE_FILE SALT TOKEN
--
-- TEMPLATE_FILE is the JSON body with the placeholder @ID@ where xdm._id goes; each request
-- gets SALT-<thread>-<counter> there, so no two requests of a run share an event id (the
-- relay would otherwise answer `duplicate`, which is cheaper). Body sent as text/plain, as
-- Adobe sends it. Responses are counted by HTTP status; done() prints one JSON line
-- ("BENCH_JSON {...}") with the counts and the latency percentiles (microseconds).

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local prefix, suffix, salt
local counter = 0
statuses = {}

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local template = file:read("*a")
  file:close()
  local at = assert(template:find("@ID@", 1, true), "template has no @ID@ placeholder")
  prefix = template:sub(1, at - 1)
  suffix = template:sub(at + 4)
  salt = args[2] .. "-" .. tostring(tid) .. "-"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "text/plain"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, prefix .. salt .. counter .. suffix)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses") or {}
    for status, n in pairs(seen) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %.0f, "p90": %.0f, "p99": %.0f, "max": %.0f}, '
      .. '"statuses": {%s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(parts, ", ")
  ))
end
