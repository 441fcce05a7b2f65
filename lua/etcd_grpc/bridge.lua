-- The Lua half of the hand-off: runs a native call without blocking nginx.
--
-- In phases that can yield, a call is submitted to the worker's Tokio
-- runtime and the calling coroutine waits on a pooled ngx.semaphore. One
-- dispatcher light thread per worker (a timer) reads a unix socket the
-- runtime writes a byte to when results are ready; it drains all finished
-- calls at once and posts each waiter. Idle, it costs nothing: it sleeps in
-- epoll. Where nginx cannot yield, the call blocks up to its timeout; in
-- the master (init phase) it runs on a throwaway runtime.

local core = require "etcd_grpc.native"

local ngx = ngx
local pcall = pcall
local tostring = tostring

local semaphore = ngx and require "ngx.semaphore"
local get_phase = ngx and ngx.get_phase
local worker_exiting = ngx and ngx.worker.exiting
local timer_at = ngx and ngx.timer.at
local ngx_sleep = ngx and ngx.sleep
local log = ngx and ngx.log
local ERR = ngx and ngx.ERR
local WARN = ngx and ngx.WARN
local INFO = ngx and ngx.INFO


local _M = { _VERSION = "0.1.0" }

-- Phases in which a cosocket-driven semaphore wait may yield.
local YIELDABLE = {
    rewrite = true, access = true, content = true, timer = true,
    ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

-- The runtime always completes a call by its deadline; this margin only
-- covers scheduling before the waiter gives up on its own.
local WAIT_MARGIN = 1

-- The dispatcher's socket read timeout. The doorbell always rings when
-- results are queued (and at exit), so the read never needs to expire;
-- ngx_lua logs every expiry at [error], so make it a week.
local DISPATCH_READ_TIMEOUT = 7 * 24 * 3600 * 1000

-- How often an exiting dispatcher checks whether its last waiter is gone.
local EXIT_POLL = 0.005

-- Long enough to never fire in practice; ngx_lua runs it early, with
-- premature = true, when the worker starts exiting.
local EXIT_WATCH_DELAY = 3600

local waiting = {}       -- call id -> slot being waited on
local pool = {}          -- idle slots { sema = <semaphore> }
local pool_n = 0
local npending = 0
local drained = {}       -- reused drain buffer: id, res|false, err|false, ...
local dispatcher = "stopped"   -- "stopped" | "starting" | "running" | "done"
local dispatcher_restarts = 0


local function deliver()
    local n = core.drain(drained)
    for i = 0, n - 1 do
        local base = i * 3
        local id, res, err = drained[base + 1], drained[base + 2], drained[base + 3]
        drained[base + 2] = false
        drained[base + 3] = false
        local slot = waiting[id]
        if slot then
            waiting[id] = nil
            slot.res = res or nil
            slot.err = err or nil
            slot.sema:post(1)
        end
    end
    return n
end


local function dispatch_loop()
    local path, err = core.doorbell()
    if not path then
        return nil, "failed to create doorbell: " .. tostring(err)
    end

    local sock = ngx.socket.tcp()
    sock:settimeouts(5000, 5000, DISPATCH_READ_TIMEOUT)
    local ok, cerr = sock:connect("unix:" .. path)
    if not ok then
        return nil, "failed to connect doorbell: " .. tostring(cerr)
    end

    dispatcher = "running"
    while true do
        local data, rerr = sock:receiveany(4096)
        deliver()
        if worker_exiting() then
            -- Waiters resume after being posted, so npending drops later;
            -- the runtime ends every call within its exit grace, so this
            -- short poll is bounded.
            while npending > 0 do
                ngx_sleep(EXIT_POLL)
                deliver()
            end
            break
        end
        if not data and rerr ~= "timeout" then
            sock:close()
            return nil, "doorbell read failed: " .. tostring(rerr)
        end
    end
    sock:close()
    return true
end


local start_dispatcher


local function run_dispatcher(premature)
    if premature then
        dispatcher = "stopped"
        return
    end
    local ok, res, err = pcall(dispatch_loop)
    if ok and res then
        -- Exiting and nothing left to deliver: end the runtime for good.
        dispatcher = "done"
        core.shutdown()
        log(INFO, "etcd_grpc: worker exiting, runtime shut down")
        return
    end
    log(ERR, "etcd_grpc dispatcher stopped: ", tostring(ok and err or res))
    dispatcher = "stopped"
    -- Results already queued survive in the runtime; a new dispatcher
    -- delivers them. Restart unless the worker is going away.
    if not worker_exiting() then
        dispatcher_restarts = dispatcher_restarts + 1
        start_dispatcher()
    end
end


local function exit_watch(premature)
    if not premature then
        local ok, err = timer_at(EXIT_WATCH_DELAY, exit_watch)
        if not ok then
            log(WARN, "etcd_grpc: failed to re-arm exit watch: ", err)
        end
        return
    end
    -- The worker is exiting: in-flight calls get a short grace, the
    -- doorbell rings so the dispatcher sees the exit at once.
    core.begin_exit()
end


start_dispatcher = function()
    local ok, err = timer_at(0, run_dispatcher)
    if not ok then
        return nil, err
    end
    dispatcher = "starting"
    return true
end


local function ensure_dispatcher()
    if dispatcher == "running" or dispatcher == "starting" then
        return true
    end
    if dispatcher == "done" then
        return nil, "closed"
    end
    local ok, err = start_dispatcher()
    if not ok then
        return nil, err
    end
    ok, err = timer_at(EXIT_WATCH_DELAY, exit_watch)
    if not ok then
        log(WARN, "etcd_grpc: failed to start exit watch: ", err)
    end
    return true
end


local function acquire_slot()
    if pool_n > 0 then
        local slot = pool[pool_n]
        pool[pool_n] = nil
        pool_n = pool_n - 1
        return slot
    end
    return { sema = semaphore.new() }
end


local function release_slot(slot)
    -- A slot whose semaphore still holds a count (a post raced a timeout)
    -- would wake its next user early: let it go instead.
    if slot.sema:count() == 0 then
        pool_n = pool_n + 1
        pool[pool_n] = slot
    end
end


local function await(client, op, args, timeout)
    local id, err = client:submit(op, args, timeout)
    if not id then
        return nil, err
    end

    local slot = acquire_slot()
    waiting[id] = slot
    npending = npending + 1
    local ok, werr = slot.sema:wait(timeout + WAIT_MARGIN)
    npending = npending - 1

    if not ok then
        -- The runtime missed its own deadline (or the wait was aborted):
        -- forget the call; a late result finds no waiter and is dropped.
        waiting[id] = nil
        return nil, werr == "timeout" and "timeout" or tostring(werr)
    end

    local res, rerr = slot.res, slot.err
    slot.res, slot.err = nil, nil
    release_slot(slot)
    return res, rerr
end


-- Writes the warnings the runtime queued (an unsafe ssl_verify, a refused
-- password) to the error log; returns its arguments.
local function flush_notices(...)
    local list = core.notices()
    if list then
        for i = 1, #list do
            log(WARN, list[i])
        end
    end
    return ...
end


local function dispatch(client, op, args, timeout)
    local phase = get_phase and get_phase()
    if YIELDABLE[phase] then
        local ok, err = ensure_dispatcher()
        if ok then
            return await(client, op, args, timeout)
        end
        if err == "closed" then
            return nil, "closed"
        end
        log(WARN, "etcd_grpc: no dispatcher (", err, "), blocking call")
    end
    if phase == "init" then
        return client:call_once(op, args, timeout)
    end
    return client:call(op, args, timeout)
end


-- Runs `op` with `args` on `client` (a native client) within `timeout`
-- seconds. Returns the reply table, or nil and an error string.
function _M.call(client, op, args, timeout)
    return flush_notices(dispatch(client, op, args, timeout))
end


-- Figures about this worker's hand-off, merged with the runtime's.
function _M.stats()
    local s = core.stats() or {}
    s.pending = npending
    s.pooled_slots = pool_n
    s.dispatcher = dispatcher
    s.dispatcher_restarts = dispatcher_restarts
    return s
end


return _M
