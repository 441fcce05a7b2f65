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
