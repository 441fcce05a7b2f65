-- etcd_grpc: etcd v3 over native gRPC for OpenResty, drop-in for
-- lua-resty-etcd's v3 HTTP mode (same methods, options and result shapes).
--
--   local etcd = require "etcd_grpc"
--   local cli, err = etcd.new({ http_host = "http://127.0.0.1:2379" })
--   local res, err = cli:get("/k")   -- res.status, res.headers, res.body

local core = require "etcd_grpc.native"
local bridge = require "etcd_grpc.bridge"
local options = require "etcd_grpc.options"
local health_check = require "etcd_grpc.health_check"
local mirror = require "etcd_grpc.mirror"

local type = type
local pairs = pairs
local error = error
local ipairs = ipairs
local tostring = tostring
local tbl_concat = table.concat
local str_byte = string.byte
local str_char = string.char
local str_sub = string.sub
local setmetatable = setmetatable
local getmetatable = getmetatable
local math_max = math.max
local math_huge = math.huge
local tonumber = tonumber
local math_huge = math.huge
local get_phase = ngx and ngx.get_phase
local debug_getinfo = debug.getinfo

local bridge_call = bridge.call
local ngx_now = ngx and ngx.now
local ngx_log = ngx and ngx.log
local ngx_WARN = ngx and ngx.WARN


local _M = { _VERSION = "0.1.0", health_check = health_check }
local mt = { __index = _M }

-- A per-call timeout of 0 means nginx's socket default, as in lua-resty-etcd.
local DEFAULT_SOCKET_TIMEOUT = 60

local THIS_FILE = debug_getinfo(1, "S").source


-- Misuse (a wrong argument) is raised, pointing at the caller's line: the
-- first stack level outside this file, however deep inside it the check
-- ran and whatever tail calls elided frames on the way.
local function raise(msg)
    local level = 2
    while true do
        local info = debug_getinfo(level, "S")
        if not info or info.source ~= THIS_FILE then
            break
        end
        level = level + 1
    end
    error(msg, level)
end


local function check_self(self)
    if getmetatable(self) ~= mt then
        raise("etcd_grpc: call client methods as cli:method(...), not cli.method(...)")
    end
end


local function check_opts(opts)
    if opts == nil then
        return
    end
    if type(opts) ~= "table" then
        raise("opts must be a table")
    end
    local t = opts.timeout
    if t ~= nil and (type(t) ~= "number" or t ~= t or t < 0 or t == math_huge) then
        raise("opts.timeout must be a non-negative number")
    end
end


-- Keys a method turns into strings itself: a string or a number, and nil
-- where lua-resty-etcd takes it as "" (delete, rmdir, watchdir).
local function check_key(key, nil_ok)
    local t = type(key)
    if t ~= "string" and t ~= "number" and not (nil_ok and key == nil) then
        raise("key must be a string")
    end
end


-- The endpoint list the native client dials, from `cli.endpoints` as it is
-- now: callers may rewrite endpoints[i].full_prefix (and friends) after
-- new(), and later requests must follow, as in lua-resty-etcd.
local function endpoint_list(endpoints)
    local list = {}
    for i, ep in ipairs(endpoints) do
        list[i] = ((ep.full_prefix or ep.http_host):gsub("/v3/?$", ""))
    end
    return list
end


-- Whether `endpoints` still hold the prefixes the native client was made
-- from. Runs on every call, so it compares fields and allocates nothing.
local function endpoints_unchanged(endpoints, seen)
    if not seen or #endpoints ~= #seen then
        return false
    end
    for i, ep in ipairs(endpoints) do
        if (ep.full_prefix or ep.http_host) ~= seen[i] then
            return false
        end
    end
    return true
end


local function native_client(self)
    local endpoints = self.endpoints
    if endpoints_unchanged(endpoints, self._endpoints_seen) then
        return self._native
    end
    local list = endpoint_list(endpoints)
    local native, err = core.client({
        endpoints = list,
        first = math_max(tonumber(self.init_count) or 0, 0) % #list,
        max_recv = self.max_recv_msg_size,
        -- read when the client is made (and again if endpoints change)
        extra_headers = self.extra_headers,
        -- TLS (https:// endpoints); files are read and checked here
        trusted_ca = self.trusted_ca,
        ssl_verify = self.ssl_verify,
        sni = self.sni,
        ssl_cert_path = self.ssl_cert_path,
        ssl_key_path = self.ssl_key_path,
        ssl_cert = self.ssl_cert,
        ssl_key = self.ssl_key,
        -- auth is on when both are set
        user = self.user,
        password = self.password,
    })
    if not native then
        return nil, err
    end
    local seen = {}
    for i, ep in ipairs(endpoints) do
        seen[i] = ep.full_prefix or ep.http_host
    end
    self._native, self._endpoints_seen = native, seen
    return native
end


function _M.new(opts)
    local s, err = options.normalize(opts)
    if not s then
        return nil, err
    end
    local cli = setmetatable(s, mt)
    local native
    native, err = native_client(cli)
    if not native then
        return nil, err
    end
    return cli
end


-- How often a client pushes health_check's view to the native side.
local HEALTH_SYNC = 0.1

local NO_HEALTHY = "has no healthy etcd endpoint available"

-- Calls that change nothing: retried (retry = true) after any failure.
local READS = { range = true, version = true, timetolive = true, leases = true }


local function health_view(self)
    local view = self._health_view or {}
    for i, ep in ipairs(self.endpoints) do
        view[i] = not health_check.get_target_status(ep.http_host)
    end
    self._health_view = view
    return view
end


-- Trades health news with the native client, when health_check was
-- initialised: the members it found failing go to report_failure, then
-- health_check's view goes back (due every HEALTH_SYNC s, or `now`).
local function sync_health(self, native, now)
    local conf = health_check.conf
    if not conf then
        return
    end
    local t = ngx_now()
    if not now and t < (self._health_at or 0) then
        return
    end
    self._health_at = t + HEALTH_SYNC
    local fail_timeout = conf.disabled and 0 or conf.fail_timeout
    local failed = native:health(health_view(self), fail_timeout)
    if type(failed) == "table" then
        for _, i in ipairs(failed) do
            local ep = self.endpoints[i]
            if ep then
                health_check.report_failure(ep.http_host)
            end
        end
        native:health(health_view(self), fail_timeout)
    end
end


local function call(self, op, args, timeout)
    local native, err = native_client(self)
    if not native then
        return nil, err
    end
    local conf = health_check.conf
    local attempts = 1
    if conf and conf.retry then
        attempts = #self.endpoints * (tonumber(conf.max_fails) or 1) + 1
    end
    local res, cerr, misuse
    for attempt = 1, attempts do
        sync_health(self, native)
        res, cerr, misuse = bridge_call(native, op, args, timeout)
        if misuse then
            raise(cerr)
        end
        if res or not cerr then
            return res, cerr
        end
        sync_health(self, native, true)
        -- a write is tried again only if it cannot have been applied
        if attempt == attempts or cerr == NO_HEALTHY
           or not (READS[op] or cerr:find("connection refused", 1, true)) then
            break
        end
        ngx_log(ngx_WARN, cerr, ". Retrying")
    end
    return res, cerr
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


local function deserialize_kv(deserialize, kv)
    -- DELETE events and empty values carry no value: it stays nil
    if kv and kv.value ~= nil then
        kv.value = deserialize(kv.value)
    end
end


local function deserialize_kvs(self, res)
    local body = res.body
    local kvs = res.status == 200 and body and body.kvs
    if kvs then
        local deserialize = self.serializer.deserialize
        for _, kv in ipairs(kvs) do
            deserialize_kv(deserialize, kv)   -- range values are "" when empty
        end
    end
    return res
end


function _M.get(self, key, opts)
    check_self(self)
    check_opts(opts)
    if type(key) ~= "string" then
        return nil, "key must be string"
    end
    local real_key = self.key_prefix .. key
    if real_key == "" then
        return nil, "key should not be empty"
    end
    local res, err = call(self, "range", {
        key = real_key,
        revision = opts and opts.revision,
    }, call_timeout(self, opts))
    if not res then
        return nil, err
    end
    return deserialize_kvs(self, res)
end


function _M.set(self, key, val, opts)
    check_self(self)
    check_opts(opts)
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
    return call(self, "put", {
        key = real_key,
        value = value,
        lease = opts and opts.lease,
        prev_kv = opts and opts.prev_kv,
        ignore_value = opts and opts.ignore_value,
        ignore_lease = opts and opts.ignore_lease,
    }, call_timeout(self, opts))
end


-- The end of the range holding every key that starts with `key`: the key
-- with its last byte incremented (trailing 0xff bytes dropped first), as
-- etcd's clients compute it; "\0" (all keys) for an empty or all-0xff key.
local function prefix_range_end(key)
    local n = #key
    while n > 0 and str_byte(key, n) == 0xff do
        n = n - 1
    end
    if n == 0 then
        return "\0"
    end
    return str_sub(key, 1, n - 1) .. str_char(str_byte(key, n) + 1)
end
_M.prefix_range_end = prefix_range_end


function _M.readdir(self, dir, opts)
    check_self(self)
    check_opts(opts)
    if type(dir) ~= "string" and type(dir) ~= "number" then
        return nil, "key must be string"
    end
    local real_key = self.key_prefix .. dir
    if real_key == "" then
        return nil, "key should not be empty"
    end
    local res, err = call(self, "range", {
        key = real_key,
        range_end = prefix_range_end(real_key),
        revision = opts and opts.revision,
        limit = opts and opts.limit,
        sort_order = opts and opts.sort_order,
        sort_target = opts and opts.sort_target,
        keys_only = opts and opts.keys_only,
        count_only = opts and opts.count_only,
    }, call_timeout(self, opts))
    if not res then
        return nil, err
    end
    return deserialize_kvs(self, res)
end


local function delete(self, key, range_end, opts)
    return call(self, "delete", {
        key = key,
        range_end = range_end,
        prev_kv = opts and opts.prev_kv,
    }, call_timeout(self, opts))
end


function _M.delete(self, key, opts)
    check_self(self)
    check_opts(opts)
    check_key(key, true)
    -- no empty-key check, like lua-resty-etcd: etcd answers 400
    -- "key is not provided" inside res.body
    return delete(self, self.key_prefix .. tostring(key or ""), nil, opts)
end


function _M.rmdir(self, dir, opts)
    check_self(self)
    check_opts(opts)
    check_key(dir, true)
    local real_key = self.key_prefix .. tostring(dir or "")
    return delete(self, real_key, prefix_range_end(real_key), opts)
end


local function shallow_copy(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = v
    end
    return c
end


-- lua-resty-etcd's txn rewriting: compares get the key prefixed and the
-- value serialized; success requestPuts get key and value rewritten; all
-- else passes as the caller wrote it (base64 bytes). Rewritten entries are
-- marked `raw` so the native side knows their bytes are plain.
local function encode(self, v)
    local out, err = self.serializer.serialize(v)
    if not out then
        return nil, "failed to encode value: " .. tostring(err)
    end
    return out
end


local function rewrite_compares(self, compare)
    local out = {}
    for i, rule in ipairs(compare) do
        rule = shallow_copy(rule)
        rule.key = self.key_prefix .. tostring(rule.key or "")
        if rule.value ~= nil then
            local err
            rule.value, err = encode(self, rule.value)
            if not rule.value then
                return nil, err
            end
        end
        rule.raw = true
        out[i] = rule
    end
    return out
end


local function rewrite_success(self, success)
    local out = {}
    for i, op in ipairs(success) do
        local put = op.requestPut
        if type(put) == "table" then
            op = shallow_copy(op)
            put = shallow_copy(put)
            put.key = self.key_prefix .. tostring(put.key or "")
            local err
            put.value, err = encode(self, put.value)
            if not put.value then
                return nil, err
            end
            op.requestPut = put
            op.raw = true
        end
        out[i] = op
    end
    return out
end


-- Every op list must be an array of tables; `name` names it in the error.
local function check_ops(list, name, optional)
    if list == nil and optional then
        return
    end
    if type(list) ~= "table" then
        raise(name .. " must be a table")
    end
    for i, op in ipairs(list) do
        if type(op) ~= "table" then
            raise(name .. "[" .. i .. "] must be a table")
        end
    end
end


function _M.txn(self, compare, success, failure, opts)
    check_self(self)
    check_ops(compare, "compare")
    check_ops(success, "success", true)
    check_ops(failure, "failure", true)
    check_opts(opts)
    if #compare < 1 then
        return nil, "compare couldn't be empty"
    end
    if (type(success) ~= "table" or #success < 1)
       and (type(failure) ~= "table" or #failure < 1)
    then
        return nil, "success and failure couldn't be empty at the same time"
    end
    local cmp, err = rewrite_compares(self, compare)
    if not cmp then
        return nil, err
    end
    local succ
    succ, err = rewrite_success(self, type(success) == "table" and success or {})
    if not succ then
        return nil, err
    end
    return call(self, "txn", {
        compare = cmp,
        success = succ,
        failure = type(failure) == "table" and failure or nil,
    }, call_timeout(self, opts))
end


-- setnx/setx: a put guarded by "the key does not exist" (create_revision
-- is 0), in the success or in the failure branch.
local function guarded_put(self, key, val, opts, when_absent)
    local real_key = self.key_prefix .. tostring(key)
    local value, err = self.serializer.serialize(val)
    if not value then
        return nil, "failed to encode val: " .. tostring(err)
    end
    local put = { { requestPut = { key = real_key, value = value }, raw = true } }
    return call(self, "txn", {
        compare = { { target = "CREATE", result = "EQUAL", key = real_key,
                      create_revision = 0, raw = true } },
        success = when_absent and put or nil,
        failure = (not when_absent) and put or nil,
    }, call_timeout(self, opts))
end


function _M.setnx(self, key, val, opts)
    check_self(self)
    check_opts(opts)
    check_key(key)
    return guarded_put(self, key, val, opts, true)
end


function _M.setx(self, key, val, opts)
    check_self(self)
    check_opts(opts)
    check_key(key)
    return guarded_put(self, key, val, opts, false)
end


-- The third value of watch(key, {need_cancel = true}): what watchcancel
-- takes (and, like lua-resty-http's client, closes).
local watch_handle = {}
local watch_handle_mt = { __index = watch_handle }


function watch_handle.close(self)
    return self._watcher:cancel()
end
-- The handles watch() gave out (weak: a handle still goes with its reader),
-- so that watchcancel() refuses anything else.
local handles = setmetatable({}, { __mode = "k" })


-- How many events (a message counts one at least) a reader takes straight
-- from its watcher's buffer, without yielding, before it reads once
-- through the bridge, which yields where the phase allows: a watch that a
-- busy writer keeps fed holds the event loop for this many events at
-- most, per reader.
local DIRECT_EVENTS = 64

-- A watch is a native watcher on the worker's shared Watch stream plus a
-- reader closure. Dropping the reader (GC) cancels the watcher on etcd.
local function watch(self, key, range_end, opts)
    local native, err = native_client(self)
    if not native then
        return nil, err
    end
    opts = opts or {}
    local w, misuse
    w, err, misuse = native:watcher({
        key = key,
        range_end = range_end,
        start_revision = opts.start_revision,
        progress_notify = opts.progress_notify,
        filters = opts.filters,
        prev_kv = opts.prev_kv,
        watch_id = opts.watch_id,
        fragment = opts.fragment,
        buffer = opts.buffer,
    })
    if not w then
        if misuse then
            raise(err)
        end
        return nil, err
    end

    local timeout = call_timeout(self, opts)
    local deserialize = self.serializer.deserialize
    local ended = false
    local direct = 0     -- events taken directly since the last bridge read
    local pending = 0    -- bridge reads of this reader not yet returned

    local function reader()
        if ended then
            return nil, "closed"
        end
        -- A message already here is taken at once; an empty buffer, a long
        -- run of direct reads, or a read of another light thread still
        -- waiting on this reader (whose message must come first) costs a
        -- submitted read.
        local res, rerr
        if direct < DIRECT_EVENTS and pending == 0 then
            res, rerr = w:try_read()
            if rerr then
                -- the message was taken but could not be handed over
                ended = true
                w:cancel()
                return nil, rerr
            end
        end
        local taken = res ~= nil
        if not taken then
            direct = 0
            pending = pending + 1
            res, rerr = bridge_call(w, "read", nil, timeout)
            pending = pending - 1
        end
        if not res then
            -- like the HTTP stream: a read timeout ends the watch
            ended = true
            w:cancel()
            return nil, rerr
        end
        local chunk = res.body
        local events = chunk.result and chunk.result.events
        if taken then
            direct = direct + (events and #events > 1 and #events or 1)
        end
        if events then
            for _, ev in ipairs(events) do
                deserialize_kv(deserialize, ev.kv)
                deserialize_kv(deserialize, ev.prev_kv)
            end
        end
        return chunk
    end

    if opts.need_cancel == true then
        -- a table, as lua-resty-etcd's http client is: callers check
        -- type(handle) == "table"
        local handle = setmetatable({ _watcher = w }, watch_handle_mt)
        handles[handle] = true
        return reader, nil, handle
    end
    return reader
end


function _M.watch(self, key, opts)
    check_self(self)
    check_opts(opts)
    check_key(key)
    return watch(self, self.key_prefix .. tostring(key), nil, opts)
end


function _M.watchdir(self, dir, opts)
    check_self(self)
    check_opts(opts)
    check_key(dir, true)
    local real_key = self.key_prefix .. tostring(dir or "")
    return watch(self, real_key, prefix_range_end(real_key), opts)
end


function _M.watchcancel(self, handle)
    check_self(self)
    if not handles[handle] then
        return nil, "not initialized"
    end
    return handle._watcher:cancel()
end


-- Leases (contract section 6): lua-resty-etcd's argument checks and
-- wording; IDs may be numbers or decimal strings (results give strings,
-- which round-trip above 2^53). These calls honour cli.timeout.
function _M.grant(self, ttl, id)
    check_self(self)
    if ttl == nil then
        return nil, "lease grant command needs TTL argument"
    end
    if type(ttl) ~= "number" or ttl % 1 ~= 0 then
        return nil, "ttl must be integer"
    end
    return call(self, "grant", { ttl = ttl, id = id }, call_timeout(self))
end


function _M.revoke(self, id)
    check_self(self)
    if id == nil then
        return nil, "lease revoke command needs ID argument"
    end
    return call(self, "revoke", { id = id }, call_timeout(self))
end


function _M.keepalive(self, id)
    check_self(self)
    if id == nil then
        return nil, "lease keepalive command needs ID argument"
    end
    return call(self, "keepalive", { id = id }, call_timeout(self))
end


function _M.timetolive(self, id, keys)
    check_self(self)
    if id == nil then
        return nil, "lease timetolive command needs ID argument"
    end
    return call(self, "timetolive", { id = id, keys = keys and true or false },
                call_timeout(self))
end


function _M.leases(self)
    check_self(self)
    return call(self, "leases", nil, call_timeout(self))
end


-- A background keeper of lease `id`: renewed by the runtime at TTL/3 over
-- the worker's one LeaseKeepAlive stream. Starts at once in any phase.
local keeper = {}
local keeper_mt = { __index = keeper }


local function check_keeper(self)
    if getmetatable(self) ~= keeper_mt then
        raise("etcd_grpc: call keeper methods as keeper:method(...)")
    end
end


function keeper.state(self)
    check_keeper(self)
    return self._native:state()
end


-- Yields until the keeper is no longer "alive" or `timeout` seconds
-- passed; returns the state.
function keeper.wait(self, timeout)
    check_keeper(self)
    if type(timeout) ~= "number" or not (timeout > 0 and timeout < math_huge) then
        raise("timeout must be a positive number")
    end
    local res, err = bridge_call(self._native, "wait", { timeout = timeout }, timeout + 1)
    if not res then
        return nil, err
    end
    return res.body
end


-- Stops renewing (the lease is not revoked); GC does the same.
function keeper.cancel(self)
    check_keeper(self)
    return self._native:cancel()
end


function _M.lease_keeper(self, id)
    check_self(self)
    if id == nil then
        return nil, "lease keeper needs ID argument"
    end
    -- the master's runtime would not survive fork: keepers belong to workers
    if get_phase and get_phase() == "init" then
        return nil, "lease keepers are not available in the init phase"
    end
    local native, err = native_client(self)
    if not native then
        return nil, err
    end
    local k, misuse
    k, err, misuse = native:keeper({ id = id })
    if not k then
        if misuse then
            raise(err)
        end
        return nil, err
    end
    return setmetatable({ _native = k, id = k:lease() }, keeper_mt)
end


function _M.version(self, opts)
    check_self(self)
    check_opts(opts)
    return call(self, "version", nil, call_timeout(self, opts))
end


-- The worker's mirror of `key_prefix .. prefix` (see etcd_grpc.mirror):
-- one per client config and prefix, loaded on first use.
function _M.mirror(self, prefix, opts)
    check_self(self)
    check_key(prefix)
    if opts ~= nil and type(opts) ~= "table" then
        raise("opts must be a table")
    end
    local on_change = opts and opts.on_change
    if on_change ~= nil and type(on_change) ~= "function" then
        raise("opts.on_change must be a function")
    end
    local native, err = native_client(self)
    if not native then
        return nil, err
    end
    local key = self.key_prefix .. tostring(prefix)
    local id = tbl_concat(endpoint_list(self.endpoints), ",") .. "\0" .. tostring(self.user)
               .. "\0" .. tostring(self.serializer) .. "\0" .. key
    local m, misuse
    m, err, misuse = mirror.open(id, native, key, prefix_range_end(key),
                                 self.serializer.deserialize, opts)
    if misuse then
        raise(err)
    end
    return m, err
end


-- Introspection: this worker's runtime and hand-off figures, and its
-- mirrors.
function _M.stats()
    local s = bridge.stats()
    s.mirrors = mirror.all_stats()
    return s
end


return _M
