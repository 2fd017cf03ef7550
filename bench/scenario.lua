-- wrk script shared by every bench scenario (generated data, no logic per scenario).
-- BENCH_DATA names a Lua file written by bench/run.py that returns a list of
-- {method, path, headers, body} requests; each wrk thread cycles through its own
-- slice (writes never hit the same notification from two threads), and done()
-- writes the figures as JSON to BENCH_RESULT.
local data_path = os.getenv("BENCH_DATA")
local result_path = os.getenv("BENCH_RESULT")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")
local created = 0
local requests = {}
local position = 0

function setup(thread)
  thread:set("thread_index", created)
  created = created + 1
end

function init(args)
  local items = dofile(data_path)
  for i, item in ipairs(items) do
    local headers = {}
    for name, value in pairs(item[3]) do headers[name] = value end
    requests[i] = wrk.format(item[1], item[2], headers, item[4])
  end
  position = math.floor((thread_index or 0) * #requests / thread_count)
end

function request()
  position = position + 1
  if position > #requests then position = 1 end
  return requests[position]
end

function done(summary, latency, _)
  local e = summary.errors
  local file = assert(io.open(result_path, "w"))
  file:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
  file:close()
end
