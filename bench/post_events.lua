-- wrk script for bench/ingest.py: POST an Adobe purchase with a unique xdm._id per request.
--
--   wrk ... -s bench/post_events.lua URL -- TEMPLATE_FILE SALT TOKEN [IDS]
--
-- TEMPLATE_FILE is the JSON body with the placeholder @ID@ where xdm._id goes. No two requests
-- of a run share an event id (the relay would otherwise answer `duplicate`, which is cheaper).
-- IDS `uuid` (the default) sends random version-4 UUIDs, as Adobe's Web SDK gives its events:
-- random bits first, then the thread and a counter so that they cannot repeat. IDS `seq`
-- sends SALT-<thread>-<counter>, ids that sort in the order they are sent (what the bench
-- sent before the fourteenth session; they hide the cost of a random key in an index).
-- Body sent as text/plain, as Adobe sends it. Responses are counted by HTTP status; done()
-- prints one JSON line ("BENCH_JSON {...}") with the counts and the latency percentiles
-- (microseconds).

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local prefix, suffix, salt, sequential
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
  sequential = args[4] == "seq"
  local seed = tid * 7919 + os.time()
  for i = 1, #salt do
    seed = (seed * 31 + salt:byte(i)) % 2147483647
  end
  math.randomseed(seed)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "text/plain"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
end

local function uuid4()
  local r = math.random
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%08x",
    r(0, 0xffff), r(0, 0xffff), r(0, 0xffff), r(0, 0xfff), 0x8000 + r(0, 0x3fff), tid % 0x10000, counter)
end

function request()
  counter = counter + 1
  local id = sequential and (salt .. counter) or uuid4()
  return wrk.format(nil, nil, nil, prefix .. id .. suffix)
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
