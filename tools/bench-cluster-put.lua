-- tools/bench-cluster-put.lua — the wrk script of tools/bench-cluster: every request is a
-- put of one random key (of BENCH_KEYS, named k00000000..) with a BENCH_VSIZE-byte value
-- through etcd's JSON gateway, POST /v3/kv/put {"key": base64, "value": base64}.
-- At the end it writes BENCH_OUT (when set): the counts, then the whole latency histogram,
--   requests <n> duration_us <us> status <non-2xx> connect <n> read <n> write <n> timeout <n>
--   <latency us> <count>      (one line per latency value that occurred)
-- so that the histograms of several wrk processes can be merged into exact percentiles.
-- Environment: BENCH_KEYS (10000), BENCH_VSIZE (256), BENCH_OUT, BENCH_SEED (a number that
-- differs between wrk processes run at once, so they pick different key sequences).

local keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local vsize = tonumber(os.getenv("BENCH_VSIZE") or "256")
local seed = tonumber(os.getenv("BENCH_SEED") or "1")

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
    local out, n = {}, #s
    for i = 1, n, 3 do
        local a, b, c = s:byte(i, i + 2)
        local v = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = {}
        for j = 4, 1, -1 do
            q[j] = b64chars:sub(v % 64 + 1, v % 64 + 1)
            v = math.floor(v / 64)
        end
        if not b then q[3] = "=" end
        if not c then q[4] = "=" end
        out[#out + 1] = table.concat(q)
    end
    return table.concat(out)
end

local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end

local bodies = {}
function init(args)
    math.randomseed(seed * 7919 + (tid or 0) * 104729 + os.time())
    -- the value: printable bytes, the same for every key
    local v = {}
    for i = 1, vsize do v[i] = string.char(97 + (i - 1) % 26) end
    local value = b64(table.concat(v))
    for k = 0, keys - 1 do
        bodies[k + 1] = '{"key":"' .. b64(string.format("k%08d", k)) .. '","value":"' .. value .. '"}'
    end
    wrk.method = "POST"
    wrk.path = "/v3/kv/put"
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    return wrk.format(nil, nil, nil, bodies[math.random(keys)])
end

function done(summary, latency, requests)
    local path = os.getenv("BENCH_OUT")
    if not path then return end
    local f = assert(io.open(path, "w"))
    local e = summary.errors
    f:write(string.format("requests %d duration_us %d status %d connect %d read %d write %d timeout %d\n",
        summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
    -- latency(i): the i-th latency value (us) that occurred, and how many times (wrk 4.1)
    for i = 1, #latency do
        local us, n = latency(i)
        f:write(string.format("%d %d\n", us, n))
    end
    f:close()
end
