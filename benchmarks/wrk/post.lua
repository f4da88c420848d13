-- POST one fixed body (text or binary) with the given headers; print one JSON result line at the end.
--
-- Usage: wrk -t1 -c64 -d10s -s benchmarks/wrk/post.lua URL -- BODY_FILE ['Header: value' ...]
-- The last line of stdout is: BENCH_RESULT {json}, with latency in microseconds. Requests answered with
-- status >= 400 are counted in errors_status (wrk's own rule); socket errors and timeouts separately.

function init(args)
   local path = args[1]
   if path == nil then
      error("post.lua needs the body file as its first script argument (after --)")
   end
   local fh = assert(io.open(path, "rb"))
   wrk.body = fh:read("*a")
   fh:close()
   wrk.method = "POST"
   for i = 2, #args do
      local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
      if name ~= nil then
         wrk.headers[name] = value
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_s":%.6f,"bytes":%d,"rps":%.3f,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
      '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
      summary.requests, seconds, summary.bytes, summary.requests / seconds,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
