-- Random calls of every public method of etcd_grpc, for t/fuzz.t (not
-- part of the product). A seed gives the same calls every time: they are
-- made up front, then run by several light threads.

local random = math.random
local randomseed = math.randomseed
local str_char = string.char
local concat = table.concat
local say = ngx.say
local now = ngx.now
local update_time = ngx.update_time
local spawn = ngx.thread.spawn
local wait = ngx.thread.wait


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


-- Mirror calls: { method, self_kind, a1, a2 }. self_kind 1 is the live
-- mirror, 2 a random value (a '.' call), 3 a closed mirror; for "mirror"
-- the client is self. A wait's revision "near" means a revision the
-- harness's writer reaches within milliseconds, so any timeout may go with
-- it; any other revision only goes with a short or a bad timeout, so that
-- no call may legitimately wait long.
local MIRROR_METHODS = {
    "mirror", "mirror", "get", "get", "pairs", "count", "revision",
    "wait", "wait", "wait", "wait", "stats", "close",
}

local MIRROR_PREFIXES = { "/a/", "/b/", "/" }

local ON_CHANGE = {
    function() end,
    function() error("on_change failed on purpose") end,
    function() ngx.sleep(0.001) end,
    print, 1, "f", true, {},
}

local SHORT_TIMEOUTS = { 0, 0.001, 0.01, -1, -0.001, 0/0, math.huge, -math.huge, "0.01", true, {} }


local function mirror_args(method)
    if method == "mirror" then
        local prefix = random(5) == 1 and value(0) or MIRROR_PREFIXES[random(#MIRROR_PREFIXES)]
        local kind, opts = random(4), nil
        if kind == 2 then
            opts = { on_change = ON_CHANGE[random(#ON_CHANGE)] }
        elseif kind == 3 then
            opts = value(0)
        end
        return prefix, opts
    elseif method == "wait" then
        if random(2) == 1 then
            return "near", NUMBERS[random(#NUMBERS)]
        end
        local revision = random(3) == 1 and "reached" or value(0)
        if revision == "reached" then
            return revision, value(0)
        end
        return revision, SHORT_TIMEOUTS[random(#SHORT_TIMEOUTS)]
    end
    return value(0), value(0)
end


function _M.mirror_calls(seed, n)
    randomseed(seed)
    local out = {}
    for i = 1, n do
        local method = MIRROR_METHODS[random(#MIRROR_METHODS)]
        local self_kind = random(20) == 1 and 2 or (random(20) == 1 and 3 or 1)
        local a1, a2 = mirror_args(method)
        out[i] = { method, self_kind, a1, a2 }
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


-- A fresh count for drive().
function _M.tally()
    return { raised = 0, returned = 0, leaks = 0, slow = 0, shown = 0 }
end


-- The first few findings are printed: the response body shows them.
local function note(t, text)
    if t.shown < 5 then
        t.shown = t.shown + 1
        say(text)
    end
end


local function leak(t, where, err)
    local bad = type(err) ~= "string" and "a " .. type(err) or _M.internal(err)
    if bad then
        t.leaks = t.leaks + 1
        note(t, "leak (" .. bad .. ") in " .. where .. ": " .. tostring(err))
    end
end


-- Runs `calls` on `threads` light threads, each through `call(c)`, which
-- returns what pcall returned. Counts into `t` the raises, the returns,
-- every error that is not a string or carries the library's inside text,
-- and, given `max_seconds`, every call that took longer.
function _M.drive(t, calls, threads, call, label, max_seconds)
    local i = 0
    local function worker()
        while true do
            i = i + 1
            local n, c = i, calls[i]
            if not c then
                return
            end
            update_time()
            local started = now()
            local ok, res, err = call(c)
            update_time()
            local where = c[1] .. " (" .. label .. ", call " .. n .. ")"
            if max_seconds and now() - started > max_seconds then
                t.slow = t.slow + 1
                note(t, "slow: " .. where)
            end
            if not ok then
                t.raised = t.raised + 1
                leak(t, where .. " raised", res)
            else
                t.returned = t.returned + 1
                if res == nil and err ~= nil then
                    leak(t, where .. " returned", err)
                end
            end
        end
    end
    local list = {}
    for k = 1, threads do
        list[k] = spawn(worker)
    end
    for k = 1, threads do
        wait(list[k])
    end
end


return _M
