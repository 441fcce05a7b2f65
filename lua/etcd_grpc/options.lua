-- Validation and defaults for etcd_grpc.new(opts), with lua-resty-etcd's
-- exact error strings (reference/lua-api-contract.md section 3), and the
-- endpoint parsing that fills `cli.endpoints`.

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local tostring = tostring
local math_floor = math.floor
local math_random = math.random
local str_match = string.match


local _M = { _VERSION = "0.1.0" }

local DEFAULT_HOST = "http://127.0.0.1:2379"
local DEFAULT_PORT = "2379"
local API_PREFIX = "/v3"


local function is_int(v)
    return type(v) == "number" and v == v and v > -2^53 and v < 2^53
           and math_floor(v) == v
end


local function is_uint(v)
    return is_int(v) and v >= 0
end


-- `scheme://host[:port]`, host a name/IPv4 (`[A-Za-z0-9.-]+`) or a bracketed
-- IPv6 literal; no path, no trailing slash.
local function parse_host(host)
    if type(host) ~= "string" then
        return nil
    end
    local scheme, rest = str_match(host, "^(%a[%w+.-]*)://(.+)$")
    if not scheme then
        return nil
    end
    local name, port = str_match(rest, "^(%[[%x:.]+%])(.*)$")
    if not name then
        name, port = str_match(rest, "^([%w.-]+)(.*)$")
    end
    if not name then
        return nil
    end
    if port == "" then
        port = DEFAULT_PORT
    else
        port = str_match(port, "^:(%d+)$")
        if not port then
            return nil
        end
    end
    local http_host = scheme .. "://" .. name .. ":" .. port
    return {
        scheme = scheme,
        host = name,
        address = name,
        port = port,
        http_host = http_host,
        full_prefix = http_host .. API_PREFIX,
        api_prefix = API_PREFIX,
    }
end
_M.parse_host = parse_host


local function load_serializer(name)
    if type(name) ~= "string" then
        return require "etcd_grpc.serializers.json"
    end
    for _, prefix in ipairs({ "etcd_grpc.serializers.", "resty.etcd.serializers." }) do
        local ok, mod = pcall(require, prefix .. name)
        if ok and type(mod) == "table" then
            return mod
        end
    end
    -- lua-resty-etcd silently falls back to json for an unknown name.
    return require "etcd_grpc.serializers.json"
end


-- Fills defaults into `opts` (in place, like lua-resty-etcd) and returns
-- the normalised settings, or nil and the contract's error string.
function _M.normalize(opts)
    opts = opts or {}
    if type(opts) ~= "table" then
        return nil, "opts must be table"
    end
    if opts.protocol ~= nil and opts.protocol ~= "v3" then
        return nil, "only support etcd v3 api"
    end

    if opts.timeout == nil then opts.timeout = 5 end
    if opts.http_host == nil then opts.http_host = DEFAULT_HOST end
    if opts.ttl == nil then opts.ttl = -1 end
    opts.serializer = load_serializer(opts.serializer)
    opts.api_prefix = API_PREFIX

    local key_prefix = opts.key_prefix or ""
    if not is_uint(opts.timeout) then
        return nil, "opts.timeout must be unsigned integer"
    end
    local http_host = opts.http_host
    if type(http_host) ~= "string" and type(http_host) ~= "table" then
        return nil, "opts.http_host must be string or string array"
    end
    if not is_int(opts.ttl) then
        return nil, "opts.ttl must be integer"
    end
    if type(key_prefix) ~= "string" then
        return nil, "opts.key_prefix must be string"
    end
    if opts.user ~= nil and type(opts.user) ~= "string" then
        return nil, "opts.user must be string or ignore"
    end
    if opts.password ~= nil and type(opts.password) ~= "string" then
        return nil, "opts.password must be string or ignore"
    end
    if opts.unix_socket_proxy ~= nil and type(opts.unix_socket_proxy) ~= "string" then
        return nil, "opts.unix_socket_proxy must be string or ignore"
    end
    if opts.unix_socket_proxy ~= nil then
        -- It names a proxy of etcd's HTTP API (APISIX's conf server), which
        -- cannot carry gRPC; going to the endpoints instead would bypass it
        -- without a word.
        return nil, "opts.unix_socket_proxy is not supported: etcd_grpc speaks gRPC to the endpoints"
    end
    local max_recv = opts.max_recv_msg_size
    if max_recv ~= nil and not (is_uint(max_recv) and max_recv > 0) then
        return nil, "opts.max_recv_msg_size must be positive integer or ignore"
    end

    local hosts = type(http_host) == "string" and { http_host } or http_host
    local endpoints = {}
    for i, host in ipairs(hosts) do
        local ep = parse_host(host)
        if not ep then
            return nil, "invalid http host: " .. tostring(host) .. ", err: not matched"
        end
        endpoints[i] = ep
    end
    if #endpoints == 0 then
        return nil, "opts.http_host must be string or string array"
    end

    local settings = {}
    for k, v in pairs(opts) do
        settings[k] = v
    end
    settings.key_prefix = key_prefix
    settings.endpoints = endpoints
    settings.is_cluster = #endpoints > 1
    settings.init_count = opts.init_count or math_random(100)
    return settings
end


return _M
