-- etcd_grpc: etcd v3 over native gRPC for OpenResty, drop-in for
-- lua-resty-etcd's v3 HTTP mode (same methods, options and result shapes).
--
--   local etcd = require "etcd_grpc"
--   local cli, err = etcd.new({ http_host = "http://127.0.0.1:2379" })
--   local res, err = cli:get("/k")   -- res.status, res.headers, res.body

local core = require "etcd_grpc.native"
local bridge = require "etcd_grpc.bridge"
local options = require "etcd_grpc.options"

local type = type
local ipairs = ipairs
local setmetatable = setmetatable
local math_max = math.max

local call = bridge.call


local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

-- A per-call timeout of 0 means nginx's socket default, as in lua-resty-etcd.
local DEFAULT_SOCKET_TIMEOUT = 60


function _M.new(opts)
    local s, err = options.normalize(opts)
    if not s then
        return nil, err
    end

    local endpoints = {}
    for i, ep in ipairs(s.endpoints) do
        endpoints[i] = ep.http_host
    end
    local native, nerr = core.client({
        endpoints = endpoints,
        first = math_max(s.init_count, 0) % #endpoints,
        max_recv = s.max_recv_msg_size,
    })
    if not native then
        return nil, nerr
    end

    s.native = native
    return setmetatable(s, mt)
end


local function call_timeout(self, opts)
    local t = opts and opts.timeout or self.timeout
    if type(t) ~= "number" or t ~= t or t <= 0 then
        t = self.timeout
    end
    if t <= 0 then
        t = DEFAULT_SOCKET_TIMEOUT
    end
    return t
end


local function deserialize_kvs(self, res)
    local body = res.body
    local kvs = res.status == 200 and body and body.kvs
    if kvs then
        local deserialize = self.serializer.deserialize
        for _, kv in ipairs(kvs) do
            kv.value = deserialize(kv.value)
        end
    end
    return res
end


function _M.get(self, key, opts)
    if type(key) ~= "string" then
        return nil, "key must be string"
    end
    local real_key = self.key_prefix .. key
    if real_key == "" then
        return nil, "key should not be empty"
    end
    local res, err = call(self.native, "range", {
        key = real_key,
        revision = opts and opts.revision,
    }, call_timeout(self, opts))
    if not res then
        return nil, err
    end
    return deserialize_kvs(self, res)
end


function _M.set(self, key, val, opts)
    if type(key) ~= "string" and type(key) ~= "number" then
        return nil, "key must be string"
    end
    local real_key = self.key_prefix .. key
    if real_key == "" then
        return nil, "key should not be empty"
    end
    local value, err = self.serializer.serialize(val)
    if not value then
        return nil, err
    end
    return call(self.native, "put", {
        key = real_key,
        value = value,
        lease = opts and opts.lease,
        prev_kv = opts and opts.prev_kv,
        ignore_value = opts and opts.ignore_value,
        ignore_lease = opts and opts.ignore_lease,
    }, call_timeout(self, opts))
end


function _M.version(self, opts)
    return call(self.native, "version", nil, call_timeout(self, opts))
end


-- Introspection: this worker's runtime and hand-off figures.
function _M.stats()
    return bridge.stats()
end


return _M
