-- Lua helpers for t/cluster.t: the cluster it starts, from
-- TEST_NGINX_MEMBER_<i> ("<url> <pid>") and TEST_NGINX_RESTART_<i>.

local t = require "etcd_grpc_test"


local _M = {}


function _M.member(i)
    local m = t.member(i)
    m.restart = os.getenv("TEST_NGINX_RESTART_" .. i)
    -- a member restarted by its script runs under a new pid, kept in
    -- etcd.pid next to the script (frozen() must stop the current one)
    local f = io.open((m.restart:gsub("restart%.sh$", "etcd.pid")))
    if f then
        m.pid = tonumber(f:read("*l")) or m.pid
        f:close()
    end
    return m
end


-- A client of all three members, member `first` first (the member a
-- worker connects to first).
function _M.client_first(first, opts)
    local etcd = require "etcd_grpc"
    opts = opts or {}
    local hosts = { _M.member(first).host }
    opts.init_count = 0    -- start at hosts[1], not at a random one
    for h in os.getenv("TEST_NGINX_CLUSTER"):gmatch("%S+") do
        if h ~= hosts[1] then
            hosts[#hosts + 1] = h
        end
    end
    opts.http_host = hosts
    return assert(etcd.new(opts))
end


-- A client of all three members, `opts` added.
function _M.client(opts)
    local etcd = require "etcd_grpc"
    opts = opts or {}
    local hosts = {}
    for h in os.getenv("TEST_NGINX_CLUSTER"):gmatch("%S+") do
        hosts[#hosts + 1] = h
    end
    opts.http_host = hosts
    return assert(etcd.new(opts))
end


-- Established connections of this worker to member i (ss).
function _M.connections(i, pid)
    return t.established(pid or ngx.worker.pid(), _M.member(i).port)
end


-- The member this worker is connected to (the first one, if several).
function _M.used_member()
    for i = 1, 3 do
        if _M.connections(i) > 0 then
            return i
        end
    end
end


-- Logs a measurement (the report quotes them) and returns "".
function _M.note(v)
    ngx.log(ngx.WARN, "cluster_test: ", debug.getinfo(2, "l").currentline, ": ", tostring(v))
    -- TEST_NGINX_CLUSTER_NOTES=<file>: also collected there, across blocks
    local path = os.getenv("TEST_NGINX_CLUSTER_NOTES")
    local f = path and path ~= "" and io.open(path, "a")
    if f then
        f:write(debug.getinfo(2, "l").currentline, ": ", tostring(v), "\n")
        f:close()
    end
    return ""
end


-- Runs `fn` with members `list` frozen (SIGSTOP), thawing them after (a
-- watchdog thaws them after `limit` s in any case).
function _M.frozen(list, limit, fn)
    local pids = {}
    for _, i in ipairs(list) do
        pids[#pids + 1] = _M.member(i).pid
    end
    return t.frozen(pids, limit, fn)
end


-- The index of the leader, asked of etcdctl.
function _M.leader()
    local eps = os.getenv("TEST_NGINX_CLUSTER"):gsub(" ", ",")
    local ctl = os.getenv("TEST_NGINX_ETCDCTL")
    local f = io.popen("ETCDCTL_API=3 " .. ctl .. " --endpoints=" .. eps
                       .. " endpoint status -w simple 2>/dev/null")
    local out = f:read("*a")
    f:close()
    for line in out:gmatch("[^\n]+") do
        local fields = {}
        for x in line:gmatch("[^,]+") do
            fields[#fields + 1] = x:match("^%s*(.-)%s*$")
        end
        if fields[5] == "true" then
            for i = 1, 3 do
                if _M.member(i).host == fields[1] then
                    return i
                end
            end
        end
    end
end


-- SIGKILLs member i and starts it again after `downtime` s, in the
-- background (the worker keeps running meanwhile).
function _M.kill_and_restart(i, downtime)
    os.execute("setsid " .. _M.member(i).restart .. " " .. downtime
               .. " </dev/null >/dev/null 2>&1 &")
end


-- Waits (up to `limit` s) until every member answers /health.
function _M.wait_healthy(limit)
    for _ = 1, limit * 10 do
        local ok = true
        for i = 1, 3 do
            local f = io.popen("curl -sf -m 1 " .. _M.member(i).host .. "/health 2>/dev/null")
            local out = f:read("*a")
            f:close()
            if not out:find('"true"', 1, true) then
                ok = false
            end
        end
        if ok then
            return true
        end
        ngx.sleep(0.1)
    end
    return false
end


-- Starts t/lib/cut_proxy.py in front of member i (repository `root`):
-- returns its URL and an object with arm() (lose the answer to the next
-- request of at least 3,000 bytes, after etcd received it), was_cut() and
-- stop(). The proxy exits by itself after 60 s.
function _M.cut_proxy(i, root)
    local base = os.tmpname()
    local target = _M.member(i).host:gsub("^https?://", "")
    os.execute("setsid python3 " .. root .. "/t/lib/cut_proxy.py " .. base .. " " .. target
               .. " 3000 60 </dev/null >/dev/null 2>&1 & echo $! > " .. base .. ".pid")
    local port
    for _ = 1, 100 do
        local f = io.open(base .. ".port")
        if f then
            port = f:read("*l")
            f:close()
            break
        end
        ngx.sleep(0.05)
    end
    assert(port, "cut_proxy did not start")
    local exists = function(suffix)
        local f = io.open(base .. suffix)
        if f then
            f:close()
        end
        return f ~= nil
    end
    local proxy = {}
    function proxy.arm()
        assert(io.open(base .. ".arm", "w")):close()
    end
    function proxy.was_cut()
        return exists(".cut")
    end
    function proxy.stop()
        os.execute("kill $(cat " .. base .. ".pid) 2>/dev/null; rm -f " .. base .. " " .. base .. ".*")
    end
    return "http://127.0.0.1:" .. port, proxy
end


return _M
