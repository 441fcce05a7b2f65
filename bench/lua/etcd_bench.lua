-- The benchmark's workloads inside one nginx worker, run by bench/run.py
-- through GET /run?w=<workload>&... and answered as one JSON object.
--
-- Each workload runs the same way on two clients: `grpc` (etcd_grpc) and
-- `gateway` (gateway_http: etcd's JSON gateway the way lua-resty-etcd
-- reaches it). Both use the `raw` serializer so that values are the same
-- bytes on both paths. Latencies come from CLOCK_MONOTONIC, the worker's
-- CPU from getrusage(RUSAGE_SELF), which counts every thread of the
-- process (the Lua thread and etcd_grpc's runtime thread alike).

local ffi = require "ffi"
local cjson = require "cjson.safe"
local etcd = require "etcd_grpc"
local gateway_http = require "gateway_http"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local C = ffi.C
local tonumber = tonumber
local tostring = tostring
local str_rep = string.rep
local str_sub = string.sub
local str_format = string.format
local tab_sort = table.sort
local math_floor = math.floor
local io_open = io.open
local ipairs = ipairs


ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk, bench_timespec *ts);
    typedef struct { long tv_sec; long tv_usec; } bench_timeval;
    typedef struct {
        bench_timeval ru_utime; bench_timeval ru_stime; long ru_rest[14];
    } bench_rusage;
    int getrusage(int who, bench_rusage *usage);
    int malloc_trim(size_t pad);
]]

local CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
local ts = ffi.new("bench_timespec")
local ru = ffi.new("bench_rusage")


local _M = {}

-- watchers held across requests (grpc readers; gateway watchers live in
-- timers), so that they stay alive while run.py measures from outside
local held = {}


local function now_us()
    C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end


local function realtime_ns()
    C.clock_gettime(CLOCK_REALTIME, ts)
    return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end


local function cpu_secs()
    C.getrusage(0, ru)
    return tonumber(ru.ru_utime.tv_sec) + tonumber(ru.ru_utime.tv_usec) / 1e6
        + tonumber(ru.ru_stime.tv_sec) + tonumber(ru.ru_stime.tv_usec) / 1e6
end


-- p50/p99/max of a list of microsecond latencies (sorts it).
local function percentiles(lat, out)
    local n = #lat
    tab_sort(lat)
    out.p50_us = n > 0 and lat[math_floor(n * 0.50) + 1] or 0
    out.p99_us = n > 0 and lat[math_floor(n * 0.99) + 1] or 0
    out.max_us = lat[n] or 0
    return out
end


local function client(args, timeout)
    local host, port = args.host, tonumber(args.port)
    if args.client == "gateway" then
        return gateway_http.new(host, port, (timeout or 10) * 1000)
    end
    -- `ca`: the etcd is TLS-only, with a certificate that CA signed
    return assert(etcd.new({
        http_host = (args.ca and "https://" or "http://") .. host .. ":" .. port,
        trusted_ca = args.ca,
        serializer = "raw",
        timeout = timeout or 10,
    }))
end


local function ready(name)
    ngx.shared.bench:set("ready:" .. name, true)
end


-- Closed loop: `c` light threads share one counter until `n` ops are done.
local function closed_loop(op, c, n, lat)
    local started, errors = 0, 0
    local function worker()
        while started < n do
            started = started + 1
            local i = started
            local t0 = now_us()
            local res, err = op()
            local t1 = now_us()
            if not res or res.status ~= 200 then
                errors = errors + 1
                if errors == 1 then
                    ngx.log(ngx.WARN, "bench: op failed: ", err or res.status)
                end
            end
            if lat then
                lat[i] = t1 - t0
            end
        end
    end
    local threads = {}
    for i = 1, c do
        threads[i] = ngx.thread.spawn(worker)
    end
    for i = 1, c do
        ngx.thread.wait(threads[i])
    end
    return errors
end


-- get or set of a 256-byte value at concurrency c.
function _M.kv(args)
    local cli = client(args)
    local key = args.key or "/bench/kv"
    local value = str_rep("v", tonumber(args.value_size) or 256)
    assert(cli:set(key, value))
    local op
    if args.op == "get" then
        op = function() return cli:get(key) end
    else
        op = function() return cli:set(key, value) end
    end
    local c, n = tonumber(args.c), tonumber(args.n)
    closed_loop(op, c, tonumber(args.warmup) or math_floor(n / 10))
    local lat = {}
    local cpu0, t0 = cpu_secs(), now_us()
    local errors = closed_loop(op, c, n, lat)
    local secs = (now_us() - t0) / 1e6
    local cpu = cpu_secs() - cpu0
    return percentiles(lat, {
        op = args.op, concurrency = c, ops = n, errors = errors, secs = secs,
        ops_per_sec = n / secs, cpu_secs = cpu, cpu_us_per_op = cpu / n * 1e6,
    })
end


-- A watcher and its first message (the creation acknowledgement).
local function open_watch(cli, args, key, dir)
    if args.client == "gateway" then
        local reader, err = dir and cli:watchdir(key) or cli:watch(key)
        assert(reader, err)
        assert(reader(), "no created message")
        return reader
    end
    local opts = { timeout = tonumber(args.timeout) or 60, buffer = tonumber(args.buffer) }
    local reader = assert(dir and cli:watchdir(key, opts) or cli:watch(key, opts))
    local first = assert(reader())
    assert(first.result.created, "no created message")
    return reader
end


-- Reads events until `count` of them arrived, calling each(event).
local function read_events(reader, count, each)
    local seen = 0
    while seen < count do
        local msg, err = reader()
        if not msg then
            return seen, err
        end
        local events = msg.result and msg.result.events
        for i = 1, events and #events or 0 do
            seen = seen + 1
            each(events[i])
        end
    end
    return seen
end


-- Put -> event latency: run.py's writer stamps each value with its
-- CLOCK_REALTIME send time in ns.
function _M.watch_latency(args)
    local cli = client(args, 60)
    local reader = open_watch(cli, args, args.key, false)
    ready(args.key)
    local lat = {}
    local seen, err = read_events(reader, tonumber(args.count), function(ev)
        local stamp = tonumber(str_sub(ev.kv.value, 1, 20):match("^%d+"))
        lat[#lat + 1] = (realtime_ns() - stamp) / 1e3
    end)
    return percentiles(lat, { events = seen, error = err })
end


-- Events per second one watcher takes from a writer going flat out.
function _M.watch_rate(args)
    local cli = client(args, 60)
    local reader = open_watch(cli, args, args.prefix, true)
    ready(args.prefix)
    local first, last
    local seen, err = read_events(reader, tonumber(args.count), function()
        last = now_us()
        first = first or last
    end)
    local secs = first and (last - first) / 1e6 or 0
    return {
        events = seen, error = err, secs = secs,
        events_per_sec = secs > 0 and (seen - 1) / secs or 0,
    }
end


-- A watcher kept from one request to the next (bench/callgrind.py's
-- `watch` workload): watch_open opens it and a marker watcher on the same
-- stream; a writer outside the worker fills its buffer, then puts the
-- marker; watch_drain waits for the marker's event (the stream's messages
-- come in revision order: every event is buffered by then) and reads
-- those `count` events.
local kept_reader, kept_marker


function _M.watch_open(args)
    local cli = client(args, 60)
    kept_reader = open_watch(cli, args, args.prefix, true)
    kept_marker = open_watch(cli, args, args.marker, true)
    return {}
end


function _M.watch_drain(args)
    assert(kept_marker())
    kept_marker = nil
    local messages = 0
    local counted = function(...)
        messages = messages + 1
        return kept_reader(...)
    end
    local seen, err = read_events(counted, tonumber(args.count), function() end)
    kept_reader = nil
    return { events = seen, messages = messages, error = err }
end


-- Opens watchers up to `n` in total (distinct prefixes) and keeps them.
-- The gateway's watchers each need a connection and a reading coroutine
-- that outlives this request: a timer per watcher.
function _M.watchers_open(args)
    local n = tonumber(args.n)
    local dict = ngx.shared.bench
    if args.client == "gateway" then
        local cli = client(args, 3600)
        local target = n - (dict:get("gw_watchers") or 0)
        for i = 1, target do
            local key = "/bench/idle/" .. i .. "/" .. n .. "/"
            assert(ngx.timer.at(0, function(premature)
                if premature then return end
                local reader = open_watch(cli, args, key, true)
                dict:incr("gw_watchers", 1, 0)
                reader()   -- blocks: the prefix stays quiet
            end))
        end
        while (dict:get("gw_watchers") or 0) < n do
            ngx.sleep(0.01)
        end
        return { watchers = dict:get("gw_watchers") }
    end
    local cli = client(args, 3600)
    while #held < n do
        held[#held + 1] = open_watch(cli, args, "/bench/idle/" .. #held .. "/", true)
    end
    assert(cli:get("/bench/idle"))   -- the CRUD connection is in use too
    return { watchers = #held }
end


-- The keepers' figures from etcd_grpc.stats().
function _M.keepers_stats()
    local s = etcd.stats()
    return { keepers = s.lease_keepers, streams = s.lease_streams,
             renewals = s.lease_renewals }
end


-- Grants `n` leases of `ttl` seconds and keeps each with a background
-- keeper, held until the worker ends (etcd_grpc only: lua-resty-etcd has
-- no keeper).
function _M.keepers_open(args)
    local n, ttl = tonumber(args.n), tonumber(args.ttl)
    local cli = client(args, 60)
    for _ = 1, n do
        local id = assert(cli:grant(ttl)).body.ID
        held[#held + 1] = assert(cli:lease_keeper(id))
    end
    return _M.keepers_stats()
end


-- `n` watch create/cancel cycles at concurrency `c`: each opens a watcher,
-- reads its created answer, cancels it (make soak).
function _M.watch_cycles(args)
    local cli = client(args, 10)
    local c, n = tonumber(args.c), tonumber(args.n)
    local started, errors = 0, 0
    local function worker(w)
        while started < n do
            started = started + 1
            local reader, err, handle = cli:watch("/soak/w" .. w,
                                                  { timeout = 10, need_cancel = true })
            local first = reader and reader()
            if not first or not first.result.created then
                errors = errors + 1
                if errors == 1 then
                    ngx.log(ngx.WARN, "soak: watch cycle failed: ", tostring(err))
                end
            end
            if handle then
                cli:watchcancel(handle)
            end
        end
    end
    local threads = {}
    local t0 = now_us()
    for i = 1, c do
        threads[i] = ngx.thread.spawn(worker, i)
    end
    for i = 1, c do
        ngx.thread.wait(threads[i])
    end
    collectgarbage()
    return { cycles = n, errors = errors, secs = (now_us() - t0) / 1e6 }
end


local function status_kib(field)
    local f = assert(io_open("/proc/self/status"))
    local text = f:read("*a")
    f:close()
    return tonumber(text:match(field .. ":%s*(%d+)"))
end


-- A client with its connections up, the peak RSS reset and the garbage
-- collected: what a memory measurement starts from (the client, VmRSS).
local function measured_client(args, timeout)
    local cli = client(args, timeout)
    assert(cli:get("/bench/warm"))   -- connections up before measuring
    local f = assert(io_open("/proc/self/clear_refs", "w"))
    f:write("5")
    f:close()
    collectgarbage()
    collectgarbage()
    return cli, status_kib("VmRSS")
end


-- One full sync: readdir of the prefix run.py filled; time and the peak
-- RSS growth during the call (the peak is reset first).
function _M.readdir(args)
    local cli, rss0 = measured_client(args, 120)
    local t0 = now_us()
    local res, err = cli:readdir(args.prefix)
    local secs = (now_us() - t0) / 1e6
    assert(res and res.status == 200, err)
    local kvs = res.body.kvs or {}
    local bytes = 0
    for i = 1, #kvs do
        bytes = bytes + #kvs[i].value
    end
    local growth = status_kib("VmHWM") - rss0
    local keys = #kvs
    res, kvs = nil, nil
    collectgarbage()
    return { keys = keys, bytes = bytes, secs = secs, rss_growth_kib = growth }
end


-- Start-up sync of a gateway: one readdir per prefix, all at once (a
-- gateway syncs each of its resource types in its own timer), every
-- result held until the last arrived; time and peak RSS growth.
function _M.sync(args)
    local prefixes = {}
    for p in args.prefixes:gmatch("[^,]+") do
        prefixes[#prefixes + 1] = p
    end
    local cli, rss0 = measured_client(args, 120)
    local cpu0, t0 = cpu_secs(), now_us()
    local held, threads = {}, {}
    for i, p in ipairs(prefixes) do
        threads[i] = ngx.thread.spawn(function()
            local res, err = cli:readdir(p)
            assert(res and res.status == 200, err)
            held[i] = res
        end)
    end
    for i = 1, #threads do
        assert(ngx.thread.wait(threads[i]))
    end
    local secs = (now_us() - t0) / 1e6
    local cpu = cpu_secs() - cpu0
    local keys, bytes = 0, 0
    for i = 1, #held do
        local kvs = held[i].body.kvs or {}
        keys = keys + #kvs
        for j = 1, #kvs do
            bytes = bytes + #kvs[j].value
        end
    end
    local growth = status_kib("VmHWM") - rss0
    held = nil
    collectgarbage()
    return { keys = keys, bytes = bytes, secs = secs, cpu_secs = cpu,
             rss_growth_kib = growth }
end


-- The mirror (cli:mirror): fill, load, reads, applied events.

-- `n` keys `prefix .. %08d` of `size` bytes, each value distinct (it
-- starts with its index) so that the mirror's strings are not shared.
function _M.mirror_fill(args)
    local cli = client(args, 60)
    local prefix, n = args.prefix, tonumber(args.n)
    local size = tonumber(args.size) or 1024
    local pad = str_rep("v", size - 8)
    local next_i = 0
    local op = function()
        next_i = next_i + 1
        local i = next_i
        return cli:set(str_format("%s%08d", prefix, i), str_format("%08d", i) .. pad)
    end
    local t0 = now_us()
    local errors = closed_loop(op, tonumber(args.c) or 256, n)
    assert(errors == 0, errors .. " puts failed")
    return { keys = n, secs = (now_us() - t0) / 1e6 }
end


-- Loads the mirror of `prefix` (the worker's first): the time until
-- cli:mirror returned, the worker's RSS and Lua's heap before and after
-- (both after a full collection), and the peak RSS growth meanwhile.
function _M.mirror_load(args)
    local cli, rss0 = measured_client(args, 60)
    local lua0 = collectgarbage("count")
    local cpu0, t0 = cpu_secs(), now_us()
    local m = assert(cli:mirror(args.prefix))
    local secs = (now_us() - t0) / 1e6
    local cpu = cpu_secs() - cpu0
    held.mirror = m
    collectgarbage()
    collectgarbage()
    local rss1, lua1 = status_kib("VmRSS"), collectgarbage("count")
    local peak = status_kib("VmHWM") - rss0
    -- what of the growth is the load's freed buffers, kept by malloc
    C.malloc_trim(0)
    return { keys = m:count(), revision = m:revision(), secs = secs, cpu_secs = cpu,
             rss_growth_kib = rss1 - rss0, peak_rss_growth_kib = peak,
             trimmed_rss_growth_kib = status_kib("VmRSS") - rss0,
             lua_growth_kib = lua1 - lua0 }
end


-- ns per m:get of a random existing key: keys from a precomputed array of
-- random indexes, taken by a changing counter, the values' lengths summed
-- (LuaJIT can neither hoist the lookup nor drop it); minus the same loop
-- without the m:get. Best of `rounds` for each.
function _M.mirror_get(args)
    local m = assert(held.mirror, "no mirror loaded")
    local keys, nkeys = {}, 0
    for k in m:pairs() do
        nkeys = nkeys + 1
        keys[nkeys] = k
    end
    local mask = 65535
    local pick = {}
    for i = 0, mask do
        pick[i] = keys[math.random(nkeys)]
    end
    local n, rounds = tonumber(args.n), tonumber(args.rounds) or 3
    local function with_get()
        local acc = 0
        for i = 1, n do
            acc = acc + #m:get(pick[bit.band(i, mask)])
        end
        return acc
    end
    local function empty()
        local acc = 0
        for i = 1, n do
            acc = acc + #pick[bit.band(i, mask)]
        end
        return acc
    end
    local function best(fn)
        local b, acc = math.huge, 0
        for _ = 1, rounds do
            local t0 = now_us()
            acc = acc + fn()
            b = math.min(b, now_us() - t0)
        end
        return b, acc
    end
    -- the lookup alone: the value is tested, its bytes (a cache miss of
    -- their own in a 50 MB copy) not read
    local function lookup_only()
        local acc = 0
        for i = 1, n do
            if m:get(pick[bit.band(i, mask)]) ~= nil then
                acc = acc + 1
            end
        end
        return acc
    end
    local t_get, acc = best(with_get)
    local t_lookup = best(lookup_only)
    local t_empty = best(empty)
    return { keys = nkeys, n = n, rounds = rounds, check = acc,
             get_ns = t_get * 1e3 / n, empty_ns = t_empty * 1e3 / n,
             ns_per_get = (t_get - t_empty) * 1e3 / n,
             ns_per_lookup = (t_lookup - t_empty) * 1e3 / n }
end


-- Applied events: from the loaded mirror's revision, the times (CLOCK_REALTIME
-- ns) at which it reflected the first and the `count`th next revision
-- (run.py's writer makes them, nothing else writes), and the worker's CPU.
function _M.mirror_apply(args)
    local m = assert(held.mirror, "no mirror loaded")
    local count = tonumber(args.count)
    local base = tonumber(m:revision())
    local ev0 = m:stats().events
    ready("mirror_apply")
    assert(m:wait(base + 1, 60))
    local first_ns, cpu0 = realtime_ns(), cpu_secs()
    local ok, err = m:wait(base + count, 120)
    local last_ns = realtime_ns()
    local cpu = cpu_secs() - cpu0
    local s = m:stats()
    return { ok = ok, error = err, base = base, revision = s.revision,
             events = s.events - ev0, resyncs = s.resyncs, first_ns = first_ns,
             last_ns = last_ns, cpu_secs = cpu, keys = s.keys }
end


-- The watch burst (bench/nginx-burst.conf, several workers): every worker
-- polls the shared dict for a new burst; then it opens one prefix watcher
-- per prefix, counts itself ready, reads until it saw `count` events and
-- records when (CLOCK_REALTIME ns) under its pid.
local burst_gen = 0


local function burst_agent(premature, gen, params)
    if premature then
        return
    end
    local dict = ngx.shared.bench
    local cli = client(params, 60)
    local readers = {}
    for p in params.prefixes:gmatch("[^,]+") do
        readers[#readers + 1] = open_watch(cli, params, p, true)
    end
    local want, seen, messages = tonumber(params.count), 0, 0
    -- etcd_grpc's calls: how many reads went through the hand-off
    local calls0 = params.client ~= "gateway" and etcd.stats().calls
    local all_seen = semaphore.new()
    dict:incr("burst:ready:" .. gen, 1, 0)
    local threads = {}
    for i, reader in ipairs(readers) do
        threads[i] = ngx.thread.spawn(function()
            while seen < want do
                local msg = reader()
                if not msg then
                    return
                end
                local events = msg.result and msg.result.events
                seen = seen + (events and #events or 0)
                messages = messages + 1
            end
            all_seen:post(1)
        end)
    end
    all_seen:wait(120)
    local done_ns = realtime_ns()
    for i = 1, #threads do
        ngx.thread.kill(threads[i])
    end
    dict:set("burst:done_ns:" .. gen .. ":" .. ngx.worker.pid(), done_ns)
    dict:incr("burst:messages:" .. gen, messages, 0)
    if calls0 then
        dict:incr("burst:calls:" .. gen, etcd.stats().calls - calls0, 0)
    end
    dict:incr("burst:done:" .. gen, 1, 0)
end


local function burst_poll(premature)
    if premature then
        return
    end
    local dict = ngx.shared.bench
    local gen = dict:get("burst:gen") or 0
    if gen ~= burst_gen then
        burst_gen = gen
        local params = cjson.decode(dict:get("burst:params"))
        ngx.timer.at(0, burst_agent, gen, params)
    end
end


function _M.init_burst_worker()
    assert(ngx.timer.every(0.01, burst_poll))
end


-- Arms a burst: the workers' pollers start their agents.
function _M.burst_arm(args)
    local dict = ngx.shared.bench
    dict:set("burst:params", cjson.encode(args))
    local gen = dict:incr("burst:gen", 1, 0)
    return { gen = gen }
end


-- How far the armed burst is: workers ready, done, and their done times.
function _M.burst_state(args)
    local dict = ngx.shared.bench
    local gen = args.gen
    local out = { ready = dict:get("burst:ready:" .. gen) or 0,
                  done = dict:get("burst:done:" .. gen) or 0, done_ns = {},
                  messages = dict:get("burst:messages:" .. gen) or 0,
                  calls = dict:get("burst:calls:" .. gen) }
    for pid in (args.pids or ""):gmatch("%d+") do
        out.done_ns[pid] = dict:get("burst:done_ns:" .. gen .. ":" .. pid)
    end
    return out
end


function _M.handle()
    local args = ngx.req.get_uri_args()
    local fn = _M[args.w]
    if not fn or args.w == "handle" then
        ngx.status = 400
        ngx.say("unknown workload: ", tostring(args.w))
        return
    end
    local ok, out = pcall(fn, args)
    if not ok then
        ngx.status = 500
        ngx.say(cjson.encode({ error = tostring(out) }))
        return
    end
    ngx.say(cjson.encode(out))
end


return _M
