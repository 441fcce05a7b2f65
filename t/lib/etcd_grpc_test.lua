-- Lua helpers for the test suites (not part of the product).

local io_popen = io.popen
local tostring = tostring


local _M = {}


-- A client of the test etcd (TEST_NGINX_ETCD_HOST, exported to nginx by
-- EtcdGrpcTest) with `opts` added.
function _M.client(opts)
    local etcd = require "etcd_grpc"
    opts = opts or {}
    opts.http_host = os.getenv("TEST_NGINX_ETCD_HOST")
    return assert(etcd.new(opts))
end


-- cli:set(key, val), retried every 0.1 s (up to 10 s) while etcd is
-- coming back after a restart; returns the last answer.
function _M.set_until_ok(cli, key, val)
    local res
    for _ = 1, 100 do
        res = cli:set(key, val)
        if res and res.status == 200 then
            break
        end
        ngx.sleep(0.1)
    end
    return res
end


-- Two clients of the member t/metadata.t leaves without a leader
-- (TEST_NGINX_LEADERLESS_HOST): one sending `headers` as extra_headers,
-- one plain, each with its own `timeout`. Returns them, and the member's
-- URL, once the member has noticed it lost its leader (the tagged client
-- is refused with "no leader"; up to 20 s).
function _M.leaderless(headers, strict_timeout, plain_timeout)
    local etcd = require "etcd_grpc"
    local host = os.getenv("TEST_NGINX_LEADERLESS_HOST")
    local strict = assert(etcd.new({ http_host = host, timeout = strict_timeout,
                                     extra_headers = headers }))
    local plain = assert(etcd.new({ http_host = host, timeout = plain_timeout }))
    for _ = 1, 200 do
        local _, err = strict:get("/leaderless")
        if err and err:find("no leader", 1, true) then
            break
        end
        ngx.sleep(0.1)
    end
    return strict, plain, host
end


-- Member `i` of the cluster t/keepalive.t starts, from TEST_NGINX_MEMBER_<i>
-- ("<url> <pid>"): { host = url, port = client port, pid = etcd's pid }.
function _M.member(i)
    local host, pid = os.getenv("TEST_NGINX_MEMBER_" .. i):match("^(%S+) (%d+)$")
    return { host = host, port = tonumber(host:match(":(%d+)$")), pid = tonumber(pid) }
end


-- A compact, sorted rendering of a decoded table, skipping `skip` keys at
-- the top level: {a=1,b={1,2}}.
function _M.dump(v, skip)
    if type(v) ~= "table" then
        return tostring(v)
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local skipped = {}
    for _, k in ipairs(skip or {}) do skipped[k] = true end
    local out = {}
    for _, k in ipairs(keys) do
        if not skipped[k] then
            local item = _M.dump(v[k])
            out[#out + 1] = type(k) == "number" and item or (k .. "=" .. item)
        end
    end
    return "{" .. table.concat(out, ",") .. "}"
end


-- Local ports of the established TCP connections from process `pid` to
-- local `port`, as the kernel sees them (ss), not as the library reports them.
function _M.local_ports(pid, port)
    local f = io_popen("ss -tnpH state established '( dport = :" .. tostring(port) .. " )'")
    local out = f:read("*a")
    f:close()
    local ports = {}
    for line in out:gmatch("[^\n]+") do
        if line:find("pid=" .. tostring(pid) .. ",", 1, true) then
            -- Recv-Q Send-Q Local:Port Peer:Port Process
            ports[#ports + 1] = tonumber(line:match("^%S+%s+%S+%s+%S-:(%d+)%s"))
        end
    end
    return ports
end


-- Counts established TCP connections from process `pid` to local `port`.
function _M.established(pid, port)
    return #_M.local_ports(pid, port)
end


-- Waits up to `limit` seconds until process `pid` no longer has the
-- established connection from local port `lport` to `port`. Returns the
-- seconds waited, or nil if it is still there.
function _M.wait_closed(pid, port, lport, limit)
    ngx.update_time()
    local t0 = ngx.now()
    while true do
        local open = false
        for _, p in ipairs(_M.local_ports(pid, port)) do
            if p == lport then open = true end
        end
        ngx.update_time()
        local waited = ngx.now() - t0
        if not open then
            return waited
        end
        if waited > limit then
            return nil
        end
        ngx.sleep(0.2)
    end
end


-- The pids of `pid` (one pid or a list), as one string for kill.
local function pid_list(pid)
    local pids = type(pid) == "table" and pid or { pid }
    local all = {}
    for i, p in ipairs(pids) do
        all[i] = tostring(p)
    end
    return pids, table.concat(all, " ")
end


-- SIGSTOPs process `pid` (or every pid of the list `pid`) and returns once
-- it is stopped: SIGSTOP takes effect thread by thread, and a Go thread
-- still running can answer a request or two after kill returns, so this
-- waits (up to 1 s) until every thread of every process is stopped. A
-- watchdog thaws them after `limit` seconds (default 30) even if the test
-- dies first (the etcd serves later blocks); returns the watchdog's pid.
function _M.stop(pid, limit)
    local pids, all = pid_list(pid)
    -- the watchdog closes the fds it inherits from nginx first: a listening
    -- socket held by it would keep the next test's nginx from binding
    local f = io_popen("setsid perl -MPOSIX -e 'POSIX::close($_) for 3 .. 4095;"
                       .. " sleep " .. tostring(limit or 30) .. "; kill CONT => qw(" .. all .. ")"
                       .. "' </dev/null >/dev/null 2>&1 & echo $!")
    local watchdog = tonumber(f:read("*a"))
    f:close()
    os.execute("kill -STOP " .. all)
    for _, p in ipairs(pids) do
        os.execute("for i in $(seq 100); do grep -qv '^[^)]*) [tT]' /proc/" .. tostring(p)
                   .. "/task/*/stat 2>/dev/null || break; sleep 0.01; done")
    end
    return watchdog
end


-- Runs `fn` while process `pid` (or every pid of the list `pid`) is
-- frozen (see stop) and thaws it after, also when `fn` raises (then it says
-- `failed: <error>`). Returns what pcall returns.
function _M.frozen(pid, limit, fn)
    local watchdog = _M.stop(pid, limit)
    local res = { pcall(fn) }
    os.execute("kill -CONT " .. select(2, pid_list(pid)))
    if watchdog then
        os.execute("kill " .. tostring(watchdog) .. " 2>/dev/null")
    end
    if not res[1] then
        ngx.say("failed: ", res[2])
    end
    return unpack(res)
end


-- Reads watch responses from `reader` until an event with value `last`,
-- appending event values to `vals` and mod revisions to `revs`; a read
-- error is appended to `vals` and ends it.
function _M.read_until(reader, last, vals, revs)
    while vals[#vals] ~= last do
        local chunk, err = reader()
        if not chunk then
            vals[#vals + 1] = err
            return
        end
        for _, ev in ipairs(chunk.result.events or {}) do
            vals[#vals + 1] = ev.kv.value
            revs[#revs + 1] = tonumber(ev.kv.mod_revision)
        end
    end
end


-- Number of threads of the calling process.
-- A watcher of `dir .. "d/"` whose messages `write()` fills and leaves in
-- its buffer: `write` runs, then puts `dir .. "end"`, watched by a second
-- watcher on the same Watch stream, and returns once that event is read.
-- A stream's messages come in revision order, so every event `write` made
-- is buffered by then. Returns the reader (its created answer read).
function _M.buffered_watch(cli, dir, write)
    local reader = assert(cli:watchdir(dir .. "d/", { timeout = 5 }))
    local marker = assert(cli:watch(dir .. "end", { timeout = 5 }))
    assert(reader().result.created and marker().result.created, "not created")
    write()
    assert(cli:set(dir .. "end", "x"))
    assert(#marker().result.events == 1, "no marker event")
    return reader
end


function _M.threads()
    local f = io.open("/proc/self/status")
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("Threads:%s*(%d+)"))
end


-- Number of open sockets of process `pid`.
function _M.sockets(pid)
    local f = io_popen("ls -l /proc/" .. tostring(pid) .. "/fd 2>/dev/null")
    local out = f:read("*a")
    f:close()
    local n = 0
    for _ in out:gmatch("socket:") do
        n = n + 1
    end
    return n
end


-- Reloads nginx from inside a request and times, from outside, how long
-- this worker takes to exit: after `delay` seconds a shell sends HUP to the
-- master, polls this worker's pid every 10 ms (for up to 10 s) and writes
-- "old worker exit took <ms> ms" (or "old worker still alive after 10 s")
-- into the error log. Returns at once.
function _M.reload_and_time_exit(delay)
    local log = ngx.config.prefix() .. "logs/error.log"
    os.execute(string.format([[
        ( sleep %s; t0=$(date +%%s%%N); kill -HUP %d; n=0
          while kill -0 %d 2>/dev/null && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done
          t1=$(date +%%s%%N)
          if kill -0 %d 2>/dev/null; then echo "old worker still alive after 10 s" >> %s
          else echo "old worker exit took $(( (t1 - t0) / 1000000 )) ms" >> %s; fi
        ) >/dev/null 2>&1 &]], tostring(delay or 0), require("ngx.process").get_master_pid(),
        ngx.worker.pid(), ngx.worker.pid(), log, log))
end


-- The pid of the calling process (not of a child), from /proc/self.
function _M.pid()
    local f = io.open("/proc/self/stat")
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("^(%d+)"))
end


return _M
