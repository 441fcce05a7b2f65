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


-- Counts established TCP connections from process `pid` to local `port`,
-- as the kernel sees them (ss), not as the library reports them.
function _M.established(pid, port)
    local f = io_popen("ss -tnpH state established '( dport = :" .. tostring(port) .. " )'")
    local out = f:read("*a")
    f:close()
    local n = 0
    for line in out:gmatch("[^\n]+") do
        if line:find("pid=" .. tostring(pid) .. ",", 1, true) then
            n = n + 1
        end
    end
    return n
end


-- Number of threads of the calling process.
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


-- The pid of the calling process (not of a child), from /proc/self.
function _M.pid()
    local f = io.open("/proc/self/stat")
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("^(%d+)"))
end


return _M
