-- The config mirror: a worker's copy of one prefix, kept current by an
-- applier light thread that pulls typed deltas from the native feed (load,
-- watch from the next revision, resync after a compaction or a revision
-- going backwards: all decided natively, see src/mirror/).
--
-- The copy is a plain Lua table holding each value once, deserialized
-- once, when its event is applied: reads (get, pairs, count, revision) are
-- table lookups and do no I/O.
--
--   local m, err = cli:mirror("/routes/", { on_change = function(ev) end })
--   local route = m:get("/routes/1")

local bridge = require "etcd_grpc.bridge"

local ngx = ngx
local type = type
local next = next
local error = error
local pairs = pairs
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local math_huge = math.huge
local math_min = math.min

local semaphore = ngx and require "ngx.semaphore"
local get_phase = ngx and ngx.get_phase
local timer_at = ngx and ngx.timer.at
local thread_spawn = ngx and ngx.thread.spawn
local ngx_sleep = ngx and ngx.sleep
local ngx_now = ngx and ngx.now
local update_time = ngx and ngx.update_time
local worker_exiting = ngx and ngx.worker.exiting
local log = ngx and ngx.log
local WARN = ngx and ngx.WARN

local bridge_call = bridge.call


local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

-- How long one pull waits for news. A pull that times out costs nothing
-- (no watch is re-created); it only lets the applier notice exit.
local PULL_TIMEOUT = 60

-- The first load's deadline, and the applier's backoff after a failure.
local LOAD_TIMEOUT = 10
local RETRY_FIRST = 0.1
local RETRY_MAX = 5

-- The longest single semaphore wait of m:wait, which waits longer in
-- turns: ngx.semaphore passes milliseconds as a C int, and a timeout past
-- it (about 24 days; 1e300 becomes 0 or negative) would make each wait
-- return at once, a loop that never sleeps.
local WAIT_SLICE = 3600

-- A value the serializer turned into nil (an empty value): the key is
-- there, its value is nil.
local NIL = setmetatable({}, { __tostring = function() return "nil value" end })

-- The phases in which m:wait's semaphore wait may yield.
local YIELDABLE = bridge.YIELDABLE

-- Mirrors of this worker, by client config and prefix.
local mirrors = {}


local function check(self)
    if getmetatable(self) ~= mt then
        error("etcd_grpc: call mirror methods as m:method(...)", 3)
    end
    if self._closed then
        error("etcd_grpc: the mirror is closed", 3)
    end
end


local function notify(self, ev)
    local fn = self._on_change
    if fn then
        local ok, err = pcall(thread_spawn, fn, ev)
        if not ok then
            log(WARN, "etcd_grpc mirror ", self.prefix, ": on_change not run: ", err)
        end
    end
end


local function reached(self, revision)
    self._revision = revision
    self._revnum = tonumber(revision)
    if self._nwait > 0 then
        self._sema:post(self._nwait)
    end
end


local function apply_reset(self, d)
    local deserialize = self._deserialize
    local data, keys, values = {}, d.keys, d.values
    for i = 1, #keys do
        local v = deserialize(values[i])
        if v == nil then
            v = NIL
        end
        data[keys[i]] = v
    end
    self._data, self._count = data, #keys
    reached(self, d.revision)
    if d.resync then
        notify(self, { type = "resync", revision = d.revision })
    end
end


local function apply_events(self, d)
    local data, deserialize = self._data, self._deserialize
    local evs = d.events
    for i = 1, #evs do
        local ev = evs[i]
        local key = ev.key
        if ev.delete then
            if data[key] ~= nil then
                data[key] = nil
                self._count = self._count - 1
            end
            ev.type = "delete"
        else
            local v = deserialize(ev.value)
            if data[key] == nil then
                self._count = self._count + 1
            end
            data[key] = v == nil and NIL or v
            ev.type, ev.value = "put", v
        end
        ev.delete = nil
    end
    self._events = self._events + #evs
    reached(self, d.revision)
    if self._on_change then
        for i = 1, #evs do
            notify(self, evs[i])
        end
    end
end


local function apply(self, d)
    local kind = d.kind
    if kind == "events" then
        apply_events(self, d)
    elseif kind == "reset" then
        apply_reset(self, d)
    else
        reached(self, d.revision)
    end
end


-- The applier: pulls and applies until the mirror is closed or the worker
-- exits. Failures were recorded natively (last_error); it backs off.
local function applier(premature, self)
    if premature then
        return
    end
    local delay = RETRY_FIRST
    while not self._closed and not worker_exiting() do
        local res, err = bridge_call(self._native, "next", nil, PULL_TIMEOUT)
        if self._closed then
            return
        end
        if res then
            apply(self, res.body)
            delay = RETRY_FIRST
        elseif err == "closed" then
            return
        elseif err ~= "timeout" then
            ngx_sleep(delay)
            delay = math_min(delay * 2, RETRY_MAX)
        end
    end
end


function _M.get(self, key)
    check(self)
    local v = self._data[key]
    if v == NIL then
        return nil
    end
    return v
end


-- key, value for every entry, all of one revision: the entries are taken
-- when pairs() is called, so a loop that yields still sees one revision.
function _M.pairs(self)
    check(self)
    local keys, values, n = {}, {}, 0
    for k, v in next, self._data do
        n = n + 1
        keys[n] = k
        if v ~= NIL then
            values[n] = v
        end
    end
    local i = 0
    return function()
        i = i + 1
        if i <= n then
            return keys[i], values[i]
        end
    end
end


function _M.count(self)
    check(self)
    return self._count
end


function _M.revision(self)
    check(self)
    return self._revision
end


function _M.wait(self, revision, timeout)
    check(self)
    local want = tonumber(revision)
    -- NaN compares false with everything: it would count as reached
    if not want or want ~= want then
        error("revision must be a number or a decimal string", 2)
    end
    if type(timeout) ~= "number" or not (timeout >= 0 and timeout < math_huge) then
        error("timeout must be a non-negative number", 2)
    end
    if self._revnum >= want then
        return true
    end
    if not YIELDABLE[get_phase()] then
        error("m:wait needs a phase that can yield", 2)
    end
    update_time()
    local deadline = ngx_now() + timeout
    while self._revnum < want do
        local left = deadline - ngx_now()
        if left <= 0 or self._closed then
            return nil, "timeout"
        end
        self._nwait = self._nwait + 1
        self._sema:wait(math_min(left, WAIT_SLICE))
        self._nwait = self._nwait - 1
        update_time()
    end
    return true
end


function _M.stats(self)
    check(self)
    local f = self._native:figures()
    return {
        prefix = self.prefix,
        keys = self._count,
        revision = self._revision,
        resyncs = f.resyncs,
        events = self._events,
        last_error = f.last_error,
    }
end


function _M.close(self)
    if getmetatable(self) ~= mt then
        error("etcd_grpc: call mirror methods as m:method(...)", 2)
    end
    if self._closed then
        return nil, "closed"
    end
    self._closed = true
    mirrors[self._id] = nil
    self._native:close()
    if self._nwait > 0 then
        self._sema:post(self._nwait)
    end
    return true
end


-- The worker's mirror `id` (client config and prefix), made and loaded on
-- first use: `native` is the client's native handle, `deserialize` its
-- serializer's. Called by the façade, which checked the arguments.
function _M.open(id, native, key, range_end, deserialize, opts)
    local m = mirrors[id]
    if m then
        return m
    end
    if get_phase() == "init" then
        return nil, "mirrors are not available in the init phase"
    end
    local feed, err, misuse = native:mirror({ key = key, range_end = range_end })
    if not feed then
        return nil, err, misuse
    end
    local res
    res, err = bridge_call(feed, "next", nil, LOAD_TIMEOUT)
    if not res then
        feed:close()
        return nil, err
    end
    m = mirrors[id]
    if m then
        -- another light thread made it while this one loaded
        feed:close()
        return m
    end
    m = setmetatable({
        prefix = key,
        _id = id,
        _native = feed,
        _deserialize = deserialize,
        _on_change = opts and opts.on_change,
        _data = {},
        _count = 0,
        _events = 0,
        _revision = "0",
        _revnum = 0,
        _nwait = 0,
        _sema = semaphore.new(0),
        _closed = false,
    }, mt)
    apply(m, res.body)
    local ok, terr = timer_at(0, applier, m)
    if not ok then
        feed:close()
        return nil, "failed to start the mirror's applier: " .. tostring(terr)
    end
    mirrors[id] = m
    return m
end


-- Every live mirror's stats (for etcd_grpc.stats()).
function _M.all_stats()
    local list, n = {}, 0
    for _, m in pairs(mirrors) do
        n = n + 1
        list[n] = m:stats()
    end
    return list
end


return _M
