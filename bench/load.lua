-- wrk script for every HTTP workload, against domicile and the baseline alike (same URLs, same
-- headers, same bodies):
--   wrk -t1 -cC -dDs -s bench/load.lua URL -- MODE API_KEY PREFIX COUNT [START]
-- MODE: read (W1), write (W2), mix (W3: every tenth request a write), cold (W4: each request
-- a subject never read before; the thread stops after COUNT responses so none is read twice) or
-- lookup (find the subject by its e-mail lookup key, PREFIX..i.."@example.org", the value in the
-- body of POST /v1/lookups/email; domicile only, over the subjects W1 reads).
-- Subjects are PREFIX..i for i in START .. START+COUNT-1. The summary is one JSON line.

local mode, prefix, count, start
local headers = {}
local n = 0
local done_responses = 0

local body = '{"name":"Subject Number 7","email":"subject7@example.org","phone":"+7 495 0000007",'
  .. '"address":{"street":"7 Tverskaya","city":"Moscow","postcode":"125009"},'
  .. '"preferences":{"language":"ru","newsletter":false,"theme":"dark"},'
  .. '"tags":["customer","bench","cohort-7"],"score":49}'

function init(args)
  mode, prefix, count, start = args[1], args[3], tonumber(args[4]), tonumber(args[5] or "0")
  headers["Authorization"] = "Bearer " .. args[2]
  headers["Content-Type"] = "application/json"
  if mode == "cold" then
    -- Defined only here, because wrk parses every response for Lua once response() exists.
    response = function()
      done_responses = done_responses + 1
      if done_responses >= count then
        wrk.thread:stop()
      end
    end
  end
end

function request()
  local i = n
  n = n + 1
  if mode == "cold" then
    return wrk.format("GET", "/v1/subjects/" .. prefix .. (start + i) .. "/records/bench/profile",
      headers)
  end
  local subject = prefix .. (start + i % count)
  if mode == "lookup" then
    return wrk.format("POST", "/v1/lookups/email", headers,
      '{"value":"' .. subject .. '@example.org"}')
  end
  if mode == "write" or (mode == "mix" and i % 10 == 9) then
    -- Cycle through four records per subject: inserts at first, then updates.
    local key = "w" .. (math.floor(i / count) % 4)
    return wrk.format("PUT", "/v1/subjects/" .. subject .. "/records/bench/" .. key, headers, body)
  end
  return wrk.format("GET", "/v1/subjects/" .. subject .. "/records/bench/profile", headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
