-- A minimal look-alike of lua-resty-etcd v1.10.5's v3 HTTP mode, for the
-- differential conformance suite only (t/conformance.t): it talks to etcd's
-- HTTP gRPC-gateway exactly the way lua-resty-etcd builds its requests, and
-- decodes the answers the way lua-resty-etcd decodes them, so that its
-- results are the reference etcd_grpc's results are compared with.
--
--   local gw = require "gateway_client"
--   local cli = gw.new({ http_host = "http://127.0.0.1:2379",
--                        key_prefix = "", serializer = "json" })
--   local res, err = cli:get("/k")   -- res = { status, headers, body }
--
-- What it copies from lua-resty-etcd (lua-api-contract.md sections 5, 6, 9):
--   * real_key = key_prefix .. key; keys and values are sent base64-encoded,
--     values serialized first (json: cjson, raw: strings only);
--   * prefix ranges: range_end = real key with its last byte incremented,
--     "\0" for an empty key;
--   * get/readdir check `key must be string` (get) / `key should not be
--     empty`; set checks `key should not be empty`; delete/rmdir check nothing;
--   * txn rewriting: compare keys prefixed + base64, compare values
--     serialized + base64; in `success` only `requestPut` entries are
--     rewritten; everything else (and all of `failure`) is sent as given;
--   * setnx/setx: txn with compare {target="CREATE", key, createRevision=0}
--     and a requestPut in success (setnx) or failure (setx);
--   * version: GET <http_host>/version;
--   * results: status < 500 gives res with the body decoded by cjson.safe;
--     only when status == 200, kvs[i].key is base64-decoded and kvs[i].value
--     base64-decoded (missing gives "") then deserialized; nothing else is
--     decoded.  Transport errors give nil, "<http_host>: <err>" and a status
--     >= 500 gives nil, "invalid response code: <status>".
--
-- Not copied (irrelevant to the comparison): health check, endpoint ring,
-- auth, TLS, per-call timeout quirks.  watch / watchdir (added
-- for t/watch-conformance.t) follow lua-resty-etcd v1.10.7, see below.

local cjson = require "cjson.safe"

local ngx = ngx
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local str_byte = string.byte
local str_char = string.char
local str_sub = string.sub
local str_lower = string.lower
local tab_concat = table.concat
local encode_base64 = ngx.encode_base64
local decode_base64 = ngx.decode_base64


local _M = {}
local mt = { __index = _M }


local serializers = {
    json = {
        serialize = cjson.encode,
        deserialize = cjson.decode,
    },
    raw = {
        serialize = function(v)
            local t = type(v)
            if t ~= "string" then
                return nil, "unsupported type for " .. t
            end
            return v
        end,
        deserialize = function(v)
            return v
        end,
    },
}


function _M.new(opts)
    opts = opts or {}
    local http_host = opts.http_host or "http://127.0.0.1:2379"
    local scheme, host, port = http_host:match("^(https?)://([^:/]+):?(%d*)$")
    if not scheme then
        return nil, "invalid http host: " .. tostring(http_host) .. ", err: not matched"
    end
    if scheme ~= "http" then
        return nil, "gateway_client: only http is supported"
    end
    return setmetatable({
        http_host = http_host,
        host = host,
        port = tonumber(port) or 2379,
        key_prefix = opts.key_prefix or "",
        timeout = opts.timeout or 5,
        serializer = serializers[opts.serializer or "json"] or serializers.json,
    }, mt)
end


-- ------------------------------------------------------------ HTTP/1.1

local function read_headers(sock)
    local line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
    if not status then
        return nil, "bad status line: " .. line
    end
    local headers = {}
    while true do
        line, err = sock:receive("*l")
        if not line then
            return nil, err
        end
        if line == "" then
            break
        end
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name then
            local old = headers[name]
            if old then
                headers[name] = old .. ", " .. value
            else
                headers[name] = value
            end
        end
    end
    return status, headers
end


local function header(headers, name)
    name = str_lower(name)
    for k, v in pairs(headers) do
        if str_lower(k) == name then
            return v
        end
    end
end


local function read_chunked(sock, headers)
    local parts = {}
    while true do
        local line, err = sock:receive("*l")
        if not line then
            return nil, err
        end
        local size = tonumber(line:match("^%s*(%x+)"), 16)
        if not size then
            return nil, "bad chunk size line: " .. line
        end
        if size == 0 then
            break
        end
        local data
        data, err = sock:receive(size)
        if not data then
            return nil, err
        end
        parts[#parts + 1] = data
        line, err = sock:receive("*l")    -- CRLF after the chunk data
        if not line then
            return nil, err
        end
    end
    -- trailers (etcd 3.4's gateway always sends Grpc-Trailer-Content-Type)
    while true do
        local line, err = sock:receive("*l")
        if not line then
            return nil, err
        end
        if line == "" then
            break
        end
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if name and headers[name] == nil then
            headers[name] = value
        end
    end
    return tab_concat(parts)
end


local function http_request(self, method, path, body, timeout)
    local sock = ngx.socket.tcp()
    local ms = (timeout or self.timeout) * 1000
    if ms <= 0 then
        ms = 60000
    end
    sock:settimeouts(ms, ms, ms)
    local ok, err = sock:connect(self.host, self.port)
    if not ok then
        return nil, err
    end

    local req = {
        method, " ", path, " HTTP/1.1\r\n",
        "Host: ", self.host, ":", tostring(self.port), "\r\n",
        "User-Agent: conformance-gateway-client\r\n",
        "Connection: keep-alive\r\n",
    }
    if body then
        req[#req + 1] = "Content-Type: application/json\r\n"
        req[#req + 1] = "Content-Length: " .. #body .. "\r\n"
    end
    req[#req + 1] = "\r\n"
    if body then
        req[#req + 1] = body
    end

    local bytes
    bytes, err = sock:send(tab_concat(req))
    if not bytes then
        sock:close()
        return nil, err
    end

    local status, headers = read_headers(sock)
    if not status then
        sock:close()
        return nil, headers
    end

    local data
    local te = header(headers, "Transfer-Encoding")
    local len = tonumber(header(headers, "Content-Length") or "")
    local keepalive = true
    if te and str_lower(te):find("chunked", 1, true) then
        data, err = read_chunked(sock, headers)
    elseif len then
        data, err = len > 0 and sock:receive(len) or ""
    else
        data, err = sock:receive("*a")
        keepalive = false
    end
    if not data then
        sock:close()
        return nil, err
    end

    local conn = header(headers, "Connection")
    if keepalive and not (conn and str_lower(conn) == "close") then
        sock:setkeepalive(60000, 16)
    else
        sock:close()
    end
    return { status = status, headers = headers, raw_body = data }
end


-- lua-resty-etcd's _request_uri: JSON body (only if the table is not empty),
-- status >= 500 is an error, the body is decoded with cjson.safe.
local function request(self, method, path, body, timeout)
    local payload
    if body and next(body) ~= nil then
        local err
        payload, err = cjson.encode(body)
        if not payload then
            return nil, err
        end
    end
    local res, err = http_request(self, method, path, payload, timeout)
    if not res then
        return nil, self.http_host .. ": " .. tostring(err)
    end
    if res.status >= 500 then
        return nil, "invalid response code: " .. res.status
    end
    res.body = cjson.decode(res.raw_body)
    return res
end


local function post(self, uri, body, timeout)
    return request(self, "POST", "/v3" .. uri, body, timeout)
end


-- ------------------------------------------------------------ helpers

local function serialize_and_encode_base64(serialize, data)
    local err
    data, err = serialize(data)
    if not data then
        return nil, err
    end
    return encode_base64(data)
end


local function verify_key(key)
    if not key or #key == 0 then
        return false, "key should not be empty"
    end
    return true
end


local function get_real_key(prefix, key)
    return (type(prefix) == "string" and prefix or "") .. key
end


local function get_range_end(key)
    if #key == 0 then
        return str_char(0)
    end
    local last = str_sub(key, -1)
    key = str_sub(key, 1, #key - 1)
    return key .. str_char(str_byte(last) + 1)
end
_M.get_range_end = get_range_end


local function shallow_clone(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = v
    end
    return c
end


-- ------------------------------------------------------------ requests

local function put(self, key, val, attr)
    local _, err = verify_key(key)
    if err then
        return nil, err
    end
    key = encode_base64(key)
    val, err = serialize_and_encode_base64(self.serializer.serialize, val)
    if not val then
        return nil, err
    end
    attr = attr or {}
    local body = {
        value = val,
        key = key,
        lease = attr.lease or nil,
        prev_kv = attr.prev_kv and true or nil,
        ignore_value = attr.ignore_value and true or nil,
        ignore_lease = attr.ignore_lease and true or nil,
    }
    return post(self, "/kv/put", body, self.timeout)
end


local function range(self, key, attr)
    local _, err = verify_key(key)
    if err then
        return nil, err
    end
    attr = attr or {}
    local body = {
        key = encode_base64(key),
        range_end = attr.range_end and encode_base64(attr.range_end) or nil,
        limit = attr.limit,
        revision = attr.revision,
        sort_order = attr.sort_order,
        sort_target = attr.sort_target,
        keys_only = attr.keys_only and true or nil,
        count_only = attr.count_only and true or nil,
    }
    local res
    res, err = post(self, "/kv/range", body, attr.timeout or self.timeout)
    if res and res.status == 200 and type(res.body) == "table" then
        local kvs = res.body.kvs
        if type(kvs) == "table" and next(kvs) ~= nil then
            local deserialize = self.serializer.deserialize
            for _, kv in ipairs(kvs) do
                kv.key = decode_base64(kv.key)
                kv.value = decode_base64(kv.value or "")
                kv.value = deserialize(kv.value)
            end
        end
    end
    return res, err
end


local function deleterange(self, key, attr)
    attr = attr or {}
    local body = {
        key = encode_base64(key),
        range_end = attr.range_end and encode_base64(attr.range_end) or nil,
        prev_kv = attr.prev_kv and true or nil,
    }
    return post(self, "/kv/deleterange", body, self.timeout)
end


local function txn(self, opts, compare, success, failure)
    if #compare < 1 then
        return nil, "compare couldn't be empty"
    end
    if (success == nil or #success < 1) and (failure == nil or #failure < 1) then
        return nil, "success and failure couldn't be empty at the same time"
    end
    local body = {
        compare = compare,
        success = success,
        failure = failure,
    }
    return post(self, "/kv/txn", body, opts and opts.timeout or self.timeout)
end


-- ------------------------------------------------------------ methods

function _M.get(self, key, opts)
    if type(key) ~= "string" then
        return nil, "key must be string"
    end
    key = get_real_key(self.key_prefix, key)
    return range(self, key, {
        timeout = opts and opts.timeout,
        revision = opts and opts.revision,
    })
end


function _M.readdir(self, key, opts)
    key = get_real_key(self.key_prefix, key)
    return range(self, key, {
        range_end = get_range_end(key),
        revision = opts and opts.revision,
        timeout = opts and opts.timeout,
        limit = opts and opts.limit,
        sort_order = opts and opts.sort_order,
        sort_target = opts and opts.sort_target,
        keys_only = opts and opts.keys_only,
        count_only = opts and opts.count_only,
    })
end


function _M.set(self, key, val, opts)
    key = get_real_key(self.key_prefix, key)
    return put(self, key, val, {
        timeout = opts and opts.timeout,
        lease = opts and opts.lease,
        prev_kv = opts and opts.prev_kv,
        ignore_value = opts and opts.ignore_value,
        ignore_lease = opts and opts.ignore_lease,
    })
end


-- setnx / setx: a put guarded by "create_revision == 0", in the success
-- branch (only if absent) or in the failure branch (only if present).
local function guarded_put(self, key, val, opts, when_absent)
    key = get_real_key(self.key_prefix, key)
    local compare = { { target = "CREATE", key = encode_base64(key), createRevision = 0 } }
    local v, err = serialize_and_encode_base64(self.serializer.serialize, val)
    if not v then
        return nil, "failed to encode val: " .. tostring(err)
    end
    local put = { { requestPut = { key = encode_base64(key), value = v } } }
    if when_absent then
        return txn(self, opts, compare, put, nil)
    end
    return txn(self, opts, compare, nil, put)
end


function _M.setnx(self, key, val, opts)
    return guarded_put(self, key, val, opts, true)
end


function _M.setx(self, key, val, opts)
    return guarded_put(self, key, val, opts, false)
end


function _M.delete(self, key, opts)
    key = get_real_key(self.key_prefix, key)
    return deleterange(self, key, { prev_kv = opts and opts.prev_kv })
end


function _M.rmdir(self, key, opts)
    key = get_real_key(self.key_prefix, key)
    return deleterange(self, key, {
        range_end = get_range_end(key),
        prev_kv = opts and opts.prev_kv,
    })
end


function _M.txn(self, compare, success, failure, opts)
    local err
    if compare then
        local new_rules = shallow_clone(compare)
        for i, rule in ipairs(compare) do
            rule = shallow_clone(rule)
            rule.key = encode_base64(get_real_key(self.key_prefix, rule.key))
            if rule.value then
                rule.value, err = serialize_and_encode_base64(self.serializer.serialize,
                                                              rule.value)
                if not rule.value then
                    return nil, "failed to encode value: " .. tostring(err)
                end
            end
            new_rules[i] = rule
        end
        compare = new_rules
    end

    if success then
        local new_rules = shallow_clone(success)
        for i, rule in ipairs(success) do
            rule = shallow_clone(rule)
            if rule.requestPut then
                local requestPut = shallow_clone(rule.requestPut)
                requestPut.key = encode_base64(get_real_key(self.key_prefix, requestPut.key))
                requestPut.value, err = serialize_and_encode_base64(self.serializer.serialize,
                                                                    requestPut.value)
                if not requestPut.value then
                    return nil, "failed to encode value: " .. tostring(err)
                end
                rule.requestPut = requestPut
            end
            new_rules[i] = rule
        end
        success = new_rules
    end

    return txn(self, opts, compare, success, failure)
end


function _M.version(self)
    return request(self, "GET", "/version", nil, self.timeout)
end


-- Leases, as lua-resty-etcd v1.10.5 sends them: grant {TTL, ID = id or 0}
-- after its TTL checks (typeof.int), revoke/timetolive under /kv/lease/,
-- keepalive as a one-message stream (the body is {"result": ...}),
-- timetolive's keys base64-decoded when the status is 200.
function _M.grant(self, ttl, id)
    if ttl == nil then
        return nil, "lease grant command needs TTL argument"
    end
    if type(ttl) ~= "number" or ttl % 1 ~= 0 then
        return nil, "ttl must be integer"
    end
    return post(self, "/lease/grant", { TTL = ttl, ID = id or 0 }, self.timeout)
end


function _M.revoke(self, id)
    if id == nil then
        return nil, "lease revoke command needs ID argument"
    end
    return post(self, "/kv/lease/revoke", { ID = id }, self.timeout)
end


function _M.keepalive(self, id)
    if id == nil then
        return nil, "lease keepalive command needs ID argument"
    end
    return post(self, "/lease/keepalive", { ID = id }, self.timeout)
end


function _M.timetolive(self, id, keys)
    if id == nil then
        return nil, "lease timetolive command needs ID argument"
    end
    local res, err = post(self, "/kv/lease/timetolive", { ID = id, keys = keys or false },
                          self.timeout)
    if res and res.status == 200 and type(res.body) == "table"
       and type(res.body.keys) == "table"
    then
        for i, key in ipairs(res.body.keys) do
            res.body.keys[i] = decode_base64(key)
        end
    end
    return res, err
end


function _M.leases(self)
    return post(self, "/lease/leases", nil, self.timeout)
end


-- Not part of lua-resty-etcd's surface: raw gateway calls the suite needs
-- for setup (lease grant, compaction). `body` is a Lua table sent as JSON.
function _M.raw_post(self, uri, body)
    return post(self, uri, body, self.timeout)
end


-- ------------------------------------------------------------ watch
--
-- Look-alike of lua-resty-etcd v1.10.7's watch/watchdir in HTTP mode (added
-- for t/watch-conformance.t): POST /v3/watch with
-- {"create_request":{key, range_end, start_revision, prev_kv, watch_id,
-- progress_notify, fragment, filters}} on its own connection, and a reader
-- function reading the chunked response incrementally.  Each reader() call
-- reads HTTP chunks until the data ends with "\n", splits it into lines,
-- decodes each (kv/prev_kv key base64-decoded, value base64-decoded and
-- deserialized only when present) and returns the last line, with the
-- events of all the lines merged into it when there are 2 or more
-- (lua-api-contract.md 7.2/7.3, the v1.10.7 fix of PR #224).  Ends:
-- nil, "timeout" (read timeout), nil, <socket error>, nil, nil (end of
-- stream), nil, "failed to decode json body: <err>".

local function decode_watch_kv(kv, deserialize)
    if type(kv) ~= "table" then
        return
    end
    if kv.key then
        kv.key = decode_base64(kv.key)
    end
    if kv.value then
        kv.value = deserialize(decode_base64(kv.value))
    end
end


local function read_one_chunk(sock)
    local line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then
        return nil, "bad chunk size line: " .. line
    end
    if size == 0 then
        -- last chunk: skip the trailers
        while true do
            line, err = sock:receive("*l")
            if not line or line == "" then
                break
            end
        end
        return ""
    end
    local data
    data, err = sock:receive(size)
    if not data then
        return nil, err
    end
    line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    return data
end


local function watch(self, key, attr)
    attr = attr or {}
    local body = {
        create_request = {
            key = encode_base64(key),
            range_end = attr.range_end and encode_base64(attr.range_end) or nil,
            start_revision = attr.start_revision,
            prev_kv = attr.prev_kv,
            watch_id = attr.watch_id,
            progress_notify = attr.progress_notify,
            fragment = attr.fragment,
            filters = attr.filters,
        },
    }
    local payload, err = cjson.encode(body)
    if not payload then
        return nil, err
    end

    local sock = ngx.socket.tcp()
    local ms = (attr.timeout or self.timeout) * 1000
    if ms <= 0 then
        ms = 60000
    end
    sock:settimeouts(ms, ms, ms)
    local ok
    ok, err = sock:connect(self.host, self.port)
    if not ok then
        return nil, self.http_host .. ": " .. tostring(err)
    end
    local req = tab_concat({
        "POST /v3/watch HTTP/1.1\r\n",
        "Host: ", self.host, ":", tostring(self.port), "\r\n",
        "User-Agent: conformance-gateway-client\r\n",
        "Content-Type: application/json\r\n",
        "Content-Length: ", tostring(#payload), "\r\n",
        "\r\n", payload,
    })
    local bytes
    bytes, err = sock:send(req)
    if not bytes then
        sock:close()
        return nil, err
    end
    local status, headers = read_headers(sock)
    if not status then
        sock:close()
        return nil, headers
    end
    if status >= 300 then
        sock:close()
        return nil, "failed to watch data, response code: " .. status
    end
    local te = header(headers, "Transfer-Encoding")
    local chunked = te and str_lower(te):find("chunked", 1, true)
    local deserialize = self.serializer.deserialize
    local http_host = self.http_host
    local done = false

    local function read_watch()
        if done then
            return nil, "closed"
        end
        local data = ""
        while true do
            local chunk, rerr
            if chunked then
                chunk, rerr = read_one_chunk(sock)
            else
                chunk, rerr = sock:receive("*l")
                if chunk then
                    chunk = chunk .. "\n"
                elseif rerr == "closed" then
                    chunk, rerr = "", nil
                end
            end
            if not chunk then
                done = true
                sock:close()
                return nil, rerr
            end
            if chunk == "" then
                done = true
                sock:close()
                break
            end
            data = data .. chunk
            if str_sub(chunk, -1) == "\n" then
                break
            end
        end
        if #data == 0 then
            return nil, nil
        end
        local all_events = {}
        local last
        for line in data:gmatch("[^\n]+") do
            local obj, derr = cjson.decode(line)
            if not obj then
                return nil, "failed to decode json body: " .. tostring(derr)
            end
            if type(obj.error) == "table" and tonumber(obj.error.http_code)
               and tonumber(obj.error.http_code) >= 500
            then
                return nil, http_host .. ": " .. tostring(obj.error.http_status)
            end
            if type(obj.result) == "table" and type(obj.result.events) == "table" then
                for _, ev in ipairs(obj.result.events) do
                    decode_watch_kv(ev.kv, deserialize)
                    decode_watch_kv(ev.prev_kv, deserialize)
                    all_events[#all_events + 1] = ev
                end
            end
            last = obj
        end
        if last and #all_events > 1 then
            if type(last.result) ~= "table" then
                last.result = {}
            end
            last.result.events = all_events
        end
        return last
    end

    return read_watch
end


local function watch_attr(opts, range_end)
    opts = opts or {}
    return {
        range_end = range_end,
        start_revision = opts.start_revision,
        prev_kv = opts.prev_kv,
        watch_id = opts.watch_id,
        progress_notify = opts.progress_notify,
        fragment = opts.fragment,
        filters = opts.filters,
        timeout = opts.timeout,
    }
end


function _M.watch(self, key, opts)
    key = get_real_key(self.key_prefix, key)
    return watch(self, key, watch_attr(opts))
end


function _M.watchdir(self, key, opts)
    key = get_real_key(self.key_prefix, key or "")
    return watch(self, key, watch_attr(opts, get_range_end(key)))
end


return _M
