-- The HTTP-gateway path of the benchmark: etcd's JSON gRPC-gateway reached
-- the way lua-resty-etcd's v3 HTTP mode reaches it, reduced to what the
-- benchmark runs. Every call is one HTTP/1.1 request on a keep-alive
-- cosocket (pooled per worker, one connection per concurrent caller);
-- keys and values travel base64-encoded inside cjson bodies, and replies
-- are decoded with cjson and base64 exactly as lua-resty-etcd decodes them.
-- A watch holds its own connection for as long as it lives, as it does
-- through the gateway.
--
--   local gw = require "gateway_http"
--   local cli = gw.new("127.0.0.1", 2379)
--   local res, err = cli:get("/k")        -- { status = 200, body = {...} }
--   local reader = cli:watchdir("/p/")    -- reader() -> next message

local cjson = require "cjson.safe"

local ngx = ngx
local tcp = ngx.socket.tcp
local encode_base64 = ngx.encode_base64
local decode_base64 = ngx.decode_base64
local setmetatable = setmetatable
local tonumber = tonumber
local str_byte = string.byte
local str_char = string.char
local str_sub = string.sub
local str_find = string.find
local str_lower = string.lower
local tab_concat = table.concat


local _M = {}
local mt = { __index = _M }

local POOL_SIZE = 1024
local IDLE_MS = 60000


function _M.new(host, port, timeout_ms)
    return setmetatable({
        host = host,
        port = port,
        timeout = timeout_ms or 5000,
        host_header = host .. ":" .. port,
    }, mt)
end


local function range_end(key)
    local last = str_byte(key, -1)
    return str_sub(key, 1, -2) .. str_char(last + 1)
end


-- Reads one response's headers; returns status, content length (or nil),
-- whether the body is chunked.
local function read_head(sock)
    local line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    local status = tonumber(str_sub(line, 10, 12))
    local length, chunked
    while true do
        line, err = sock:receive("*l")
        if not line then
            return nil, err
        end
        if line == "" then
            break
        end
        local colon = str_find(line, ":", 1, true)
        if colon then
            local name = str_lower(str_sub(line, 1, colon - 1))
            if name == "content-length" then
                length = tonumber(str_sub(line, colon + 1))
            elseif name == "transfer-encoding" then
                chunked = str_find(str_lower(line), "chunked", colon, true) ~= nil
            end
        end
    end
    return status, length, chunked
end


-- Reads one chunk of a chunked body; "" at its end.
local function read_chunk(sock)
    local line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    local size = tonumber(line:match("^%x+"), 16)
    if not size then
        return nil, "bad chunk size: " .. line
    end
    local data = ""
    if size > 0 then
        data, err = sock:receive(size)
        if not data then
            return nil, err
        end
    end
    local _, e = sock:receive(2)
    if e then
        return nil, e
    end
    return data
end


local function read_body(sock, length, chunked)
    if not chunked then
        return sock:receive(length or 0)
    end
    local parts = {}
    while true do
        local data, err = read_chunk(sock)
        if not data then
            return nil, err
        end
        if data == "" then
            return tab_concat(parts)
        end
        parts[#parts + 1] = data
    end
end


local function connect(self)
    local sock = tcp()
    sock:settimeout(self.timeout)
    local ok, err = sock:connect(self.host, self.port)
    if not ok then
        return nil, err
    end
    return sock
end


local function send_post(self, sock, path, body)
    return sock:send({
        "POST ", path, " HTTP/1.1\r\nHost: ", self.host_header,
        "\r\nContent-Type: application/json\r\nContent-Length: ", #body,
        "\r\n\r\n", body,
    })
end


-- One request/response on a pooled keep-alive connection.
local function post(self, path, payload)
    local sock, err = connect(self)
    if not sock then
        return nil, err
    end
    local body = cjson.encode(payload)
    local ok
    ok, err = send_post(self, sock, path, body)
    if not ok then
        sock:close()
        return nil, err
    end
    local status, length, chunked = read_head(sock)
    if not status then
        sock:close()
        return nil, length
    end
    local data
    data, err = read_body(sock, length, chunked)
    if not data then
        sock:close()
        return nil, err
    end
    sock:setkeepalive(IDLE_MS, POOL_SIZE)
    if status >= 500 then
        return nil, "invalid response code: " .. status
    end
    return { status = status, body = cjson.decode(data) }
end


local function decode_kvs(res)
    local kvs = res.status == 200 and res.body and res.body.kvs
    if kvs then
        for i = 1, #kvs do
            local kv = kvs[i]
            kv.key = decode_base64(kv.key)
            kv.value = decode_base64(kv.value or "")
        end
    end
    return res
end


function _M.get(self, key)
    local res, err = post(self, "/v3/kv/range", { key = encode_base64(key) })
    return res and decode_kvs(res), err
end


function _M.readdir(self, prefix)
    local res, err = post(self, "/v3/kv/range", {
        key = encode_base64(prefix),
        range_end = encode_base64(range_end(prefix)),
    })
    return res and decode_kvs(res), err
end


function _M.set(self, key, value)
    return post(self, "/v3/kv/put", {
        key = encode_base64(key),
        value = encode_base64(value),
    })
end


-- A watch on its own connection (the gateway streams it as chunked JSON
-- lines). reader() returns the next decoded message, values decoded.
local function watch(self, key, stop)
    local sock, err = connect(self)
    if not sock then
        return nil, err
    end
    local req = { key = encode_base64(key) }
    if stop then
        req.range_end = encode_base64(stop)
    end
    local ok
    ok, err = send_post(self, sock, "/v3/watch", cjson.encode({ create_request = req }))
    if not ok then
        sock:close()
        return nil, err
    end
    local status, e = read_head(sock)
    if status ~= 200 then
        sock:close()
        return nil, status and ("invalid response code: " .. status) or e
    end
    local buffer = ""
    local function reader()
        while true do
            local nl = str_find(buffer, "\n", 1, true)
            if nl then
                local line = str_sub(buffer, 1, nl - 1)
                buffer = str_sub(buffer, nl + 1)
                local msg = cjson.decode(line)
                local events = msg and msg.result and msg.result.events
                if events then
                    for i = 1, #events do
                        local kv = events[i].kv
                        kv.key = decode_base64(kv.key)
                        kv.value = kv.value and decode_base64(kv.value)
                    end
                end
                return msg
            end
            local data, rerr = read_chunk(sock)
            if not data or data == "" then
                sock:close()
                return nil, rerr or "closed"
            end
            buffer = buffer .. data
        end
    end
    local function close()
        sock:close()
    end
    return reader, close, sock
end


function _M.watch(self, key)
    return watch(self, key)
end


function _M.watchdir(self, prefix)
    return watch(self, prefix, range_end(prefix))
end


return _M
