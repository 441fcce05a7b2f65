-- Random calls of every public method of etcd_grpc, for t/fuzz.t (not
-- part of the product). A seed gives the same calls every time: they are
-- made up front, then run by several light threads.

local random = math.random
local randomseed = math.randomseed
local str_char = string.char
local concat = table.concat


local _M = {}

-- Option names the methods read, so random values reach the checks
-- behind them and not only the type test of `opts`.
local OPTION_NAMES = {
    "timeout", "revision", "limit", "sort_order", "sort_target", "keys_only",
    "count_only", "prev_kv", "lease", "ignore_value", "ignore_lease",
    "start_revision", "progress_notify", "filters", "watch_id", "fragment",
    "buffer", "need_cancel",
}

-- Field names of txn compares and ops, in both spellings.
local TXN_NAMES = {
    "key", "value", "target", "result", "version", "create_revision",
    "createRevision", "mod_revision", "modRevision", "lease", "range_end",
    "rangeEnd", "requestPut", "request_put", "requestRange",
    "requestDeleteRange", "request_delete_range", "requestTxn", "request_txn",
    "compare", "success", "failure", "prev_kv", "limit", "sort_order",
    "keys_only", "raw",
}

local METHODS = {
    "get", "set", "setnx", "setx", "delete", "readdir", "rmdir", "txn",
    "watch", "watchdir", "watchcancel", "version", "grant", "revoke",
    "keepalive", "timetolive", "leases", "lease_keeper",
}

local NUMBERS = {
    0, 1, -1, 2, 3, 0.5, -0.5, 1e300, -1e300, 2^53, 2^53 + 2, 2^63, -2^63,
    4e18, 1e9, 1e-300, 0/0, math.huge, -math.huge, 255, 65536, 1000001,
}

local STRINGS = {
    "", "/fz/k", "/fz/", "/fz/a", "EQUAL", "VALUE", "CREATE", "MOD", "VERSION",
    "NOPUT", "NODELETE", "ASCEND", "DESCEND", "KEY", "bad", "0", "-1",
    "9223372036854775808", "L2Z6L2s=", "!!!", "\0", "\255\255", "1e3",
}


local function bytes(n)
    local t = {}
    for i = 1, n do
        t[i] = str_char(random(0, 255))
    end
    return concat(t)
end


local value

local function tbl(depth, names)
    local t = {}
    local kind = random(1, 6)
    if kind == 1 then
        return t
    elseif kind == 2 then
        for i = 1, random(1, 4) do
            t[i] = value(depth + 1, names)
        end
    elseif kind == 3 then
        t.self = t
        t[1] = t
    else
        for _ = 1, random(1, 5) do
            t[names[random(#names)]] = value(depth + 1, names)
        end
    end
    return t
end


value = function(depth, names)
    names = names or OPTION_NAMES
    local kind = random(1, depth > 3 and 8 or 11)
    if kind == 1 then return nil
    elseif kind == 2 then return random(2) == 1
    elseif kind == 3 then return NUMBERS[random(#NUMBERS)]
    elseif kind == 4 then return random(-1000, 1000)
    elseif kind == 5 then return STRINGS[random(#STRINGS)]
    elseif kind == 6 then return bytes(random(0, 40))
    elseif kind == 7 then return ngx.null
    elseif kind == 8 then return print
    else return tbl(depth, random(2) == 1 and names or TXN_NAMES)
    end
end


-- `n` calls for `seed`: { method, self_kind, a1..a4 }. self_kind 1 is the
-- client itself, 2 a random value (a '.' call).
function _M.calls(seed, n)
    randomseed(seed)
    local out = {}
    for i = 1, n do
        out[i] = {
            METHODS[random(#METHODS)], random(20) == 1 and 2 or 1,
            value(0), value(0), value(0), value(0),
        }
    end
    return out
end


-- Random options for etcd_grpc.new().
function _M.new_opts(seed, n)
    randomseed(seed)
    local names = { "timeout", "http_host", "ttl", "key_prefix", "user", "password",
                    "serializer", "protocol", "extra_headers", "max_recv_msg_size",
                    "init_count", "unix_socket_proxy", "trusted_ca", "ssl_verify", "sni",
                    "ssl_cert_path", "ssl_key_path", "ssl_cert", "ssl_key" }
    local out = {}
    for i = 1, n do
        local opts = {}
        for _ = 1, random(0, 4) do
            opts[names[random(#names)]] = value(1, names)
        end
        out[i] = opts
    end
    return out
end


-- Text that only the library's insides could produce (Lua's own runtime
-- errors, mlua, tokio, hyper, tonic, panics).
local INTERNAL = {
    "attempt to", "stack overflow", "out of Lua stack", "C stack", "semaphore",
    "MAX_PERMITS", "tokio", "mlua", "hyper", "tonic", "h2 ", "panicked",
    "bad argument #", "runtime error", "callback error", "internal error",
    "stack traceback", "a userdata value", "table: 0x", "function: 0x", "unwrap",
}

function _M.internal(err)
    for _, s in ipairs(INTERNAL) do
        if err:find(s, 1, true) then
            return s
        end
    end
end


return _M
