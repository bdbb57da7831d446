-- The wrk script of scripts/bench.sh, the same for every variant. Every
-- request: the bench request of scripts/bench/configs.py (5-member baggage,
-- a cookie, a query string), a varied x-user-id; one in 8 selects lane hdr-3
-- by x-region.
--
-- The request comes from the file named by $BENCH_REQUEST (written by
-- scripts/bench/gateway.py): "METHOD PATH" on the first line, then one
-- "name: value" header a line.
local n = 0
local method, path = "GET", "/"

local function read_request(file)
  local f = assert(io.open(file, "r"), "cannot read the request file " .. file)
  method, path = string.match(f:read("*l") or "", "^(%S+) (%S+)$")
  assert(method, file .. ": the first line is not 'METHOD PATH'")
  for line in f:lines() do
    local name, value = string.match(line, "^([^:]+): (.*)$")
    assert(name, file .. ": not a 'name: value' header: " .. line)
    wrk.headers[name] = value
  end
  f:close()
end

-- Built once per thread, so that wrk (on a CPU shared with the backend)
-- spends its time sending, not formatting: 1,000 distinct user ids.
local reqs = {}
init = function(_args)
  read_request(assert(os.getenv("BENCH_REQUEST"), "BENCH_REQUEST is not set"))
  for i = 1, 1000 do
    wrk.headers["x-user-id"] = "user-" .. (i * 7919 % 100000)
    if i % 8 == 0 then wrk.headers["x-region"] = "region-3" else wrk.headers["x-region"] = "region-none" end
    reqs[i] = wrk.format(method, path)
  end
end

request = function()
  n = n % 1000 + 1
  return reqs[n]
end

done = function(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
