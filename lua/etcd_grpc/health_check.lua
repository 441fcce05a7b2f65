-- Passive health check of etcd members, with lua-resty-etcd's API and
-- behaviour (resty.etcd.health_check): which members are unhealthy, as
-- the clients of this worker (round-robin mode) or of every worker
-- (shared-dict mode) reported them.
--
-- The native client feeds it: every member it found failing (a transport
-- error, a call past its timeout, etcd's 503; never a watch read timeout)
-- is passed to report_failure, and the clients leave the members this
-- module holds unhealthy (etcd_grpc.lua pushes its view to the native
-- side at most every 100 ms and after every failed call).

-- `ngx` is nil in plain LuaJIT (the blocking path still loads this file):
-- nothing below runs there unless init() was called.
local ngx = ngx
local type = type
local ngx_shared = ngx and ngx.shared
local ngx_log = ngx and ngx.log
local ngx_INFO = ngx and ngx.INFO
local ngx_WARN = ngx and ngx.WARN
local ngx_now = ngx and ngx.now


local _M = {
    _VERSION = "0.1.0",
    ROUND_ROBIN_MODE = "round-robin",
    SHARED_DICT_MODE = "shared-dict",
    DISABLED_MODE = "disabled",
}

-- round-robin mode: "unhealthy-<host>" -> time it is healthy again
local round_robin_unhealthy = {}


local function unhealthy_key(host)
    return "unhealthy-" .. host
end


function _M.get_target_status(host)
    local conf = _M.conf
    if not conf then
        return nil, "etcd health check uninitialized"
    end
    if conf.disabled then
        return true
    end
    if type(host) ~= "string" then
        return false, "etcd host invalid"
    end
    local key = unhealthy_key(host)
    if conf.shm_name then
        local dict = ngx_shared[conf.shm_name]
        if dict and dict:get(key) then
            return false
        end
        return true
    end
    local until_ = round_robin_unhealthy[key]
    if until_ and until_ >= ngx_now() then
        return false, "endpoint: " .. host .. " is unhealthy"
    end
    return true
end


function _M.report_failure(host)
    local conf = _M.conf
    if not conf then
        return nil, "etcd health check uninitialized"
    end
    if conf.disabled then
        return
    end
    if type(host) ~= "string" then
        return nil, "etcd host invalid"
    end
    local key = unhealthy_key(host)
    if conf.shm_name then
        local dict = ngx_shared[conf.shm_name]
        if not dict then
            return
        end
        local fails, err = dict:incr(host, 1, 0, conf.fail_timeout)
        if not fails then
            ngx_log(ngx_WARN, "failed to incr etcd endpoint fail times: ", err)
            return
        end
        if fails >= conf.max_fails and not dict:get(key) then
            dict:set(key, key, conf.fail_timeout)
            ngx_log(ngx_WARN, "update endpoint: ", host, " to unhealthy")
        end
        return
    end
    round_robin_unhealthy[key] = ngx_now() + conf.fail_timeout
    ngx_log(ngx_WARN, "update endpoint: ", host, " to unhealthy")
end


function _M.get_check_mode()
    local conf = _M.conf
    if conf and conf.disabled then
        return _M.DISABLED_MODE
    end
    if conf and conf.shm_name then
        return _M.SHARED_DICT_MODE
    end
    return _M.ROUND_ROBIN_MODE
end


function _M.disable()
    if not _M.conf then
        _M.conf = {}
    end
    _M.conf.disabled = true
end


function _M.init(opts)
    opts = opts or {}
    local conf = _M.conf
    if conf and (opts.shm_name == nil or opts.shm_name == conf.shm_name) then
        return
    end
    conf = {}
    if type(opts.shm_name) == "string" then
        if not ngx_shared[opts.shm_name] then
            return nil, "failed to get ngx.shared dict: " .. opts.shm_name
        end
        conf.shm_name = opts.shm_name
        ngx_log(ngx_INFO, "healthy check use ngx.shared dict: ", opts.shm_name)
    else
        ngx_log(ngx_INFO, "healthy check use round robin")
    end
    conf.fail_timeout = opts.fail_timeout or 10
    conf.max_fails = opts.max_fails or 1
    conf.retry = opts.retry or false
    round_robin_unhealthy = {}
    _M.conf = conf
    return _M, nil
end


return _M
