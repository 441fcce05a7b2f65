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
local pairs = pairs
local tostring = tostring
local math_min = math.min

local semaphore = ngx and require "ngx.semaphore"
local get_phase = ngx and ngx.get_phase
local worker_exiting = ngx and ngx.worker.exiting
local timer_at = ngx and ngx.timer.at
local ngx_sleep = ngx and ngx.sleep
local ngx_now = ngx and ngx.now
local update_time = ngx and ngx.update_time
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
_M.YIELDABLE = YIELDABLE

-- The runtime always completes a call by its deadline; this margin only
-- covers scheduling before the waiter gives up on its own.
local WAIT_MARGIN = 1

-- The dispatcher's socket read timeout. The doorbell always rings when
-- results are queued (and at exit), so the read never needs to expire;
-- ngx_lua logs every expiry at [error], so make it a week.
local DISPATCH_READ_TIMEOUT = 7 * 24 * 3600 * 1000

-- How often an exiting dispatcher checks whether the runtime still has
-- calls in flight.
local EXIT_POLL = 0.005

-- An exiting worker still serves the requests it had accepted, and those
-- may still make calls: the dispatcher stays until nothing has been in
-- flight for this long. The runtime ends every call within its exit grace
-- (0.5 s); past EXIT_WAIT_MAX the dispatcher stops anyway, so nothing can
-- hold a worker, and a later call takes the blocking path.
local EXIT_QUIET = 0.2
local EXIT_WAIT_MAX = 3

-- Long enough to never fire in practice; ngx_lua runs it early, with
-- premature = true, when the worker starts exiting.
local EXIT_WATCH_DELAY = 3600

-- A dispatcher that failed is started again after a delay that doubles
-- from the first to the last value, and is reset by a dispatcher that got
-- its doorbell connected. Calls made meanwhile fail at once with the
-- failure's reason.
local RESTART_FIRST = 0.01
local RESTART_MAX = 5

local waiting = {}       -- call id -> slot being waited on
local nwaiting = 0       -- entries in `waiting`
local pool = {}          -- idle slots { sema = <semaphore> }
local pool_n = 0
local drained = {}       -- reused drain buffer: id, res|false, err|false, ...
local dispatcher = "stopped"   -- "stopped" | "starting" | "running" | "backoff" | "done"
local dispatcher_restarts = 0
local restart_delay = RESTART_FIRST
local last_failure       -- why the dispatcher last stopped (calls get it in backoff)


local function deliver()
    local n, notices = core.drain(drained)
    if notices then
        for i = 1, #notices do
            log(WARN, notices[i])
        end
    end
    for i = 0, n - 1 do
        local base = i * 3
        local id, res, err = drained[base + 1], drained[base + 2], drained[base + 3]
        drained[base + 2] = false
        drained[base + 3] = false
        local slot = waiting[id]
        if slot then
            -- Also when the coroutine that waited was killed: the slot is
            -- let go here, and its semaphore post wakes no one.
            waiting[id] = nil
            nwaiting = nwaiting - 1
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
        return nil, tostring(err)
    end

    local sock = ngx.socket.tcp()
    sock:settimeouts(5000, 5000, DISPATCH_READ_TIMEOUT)
    local ok, cerr = sock:connect("unix:" .. path)
    if not ok then
        return nil, "failed to connect doorbell: " .. tostring(cerr)
    end

    dispatcher = "running"
    restart_delay = RESTART_FIRST
    while true do
        local data, rerr = sock:receiveany(4096)
        deliver()
        if worker_exiting() then
            -- Wait for what the runtime still runs, not for Lua waiters:
            -- those may have been killed and will never come back.
            update_time()
            local give_up = ngx_now() + EXIT_WAIT_MAX
            local quiet_since
            while ngx_now() < give_up do
                deliver()
                if core.in_flight() > 0 then
                    quiet_since = nil
                else
                    quiet_since = quiet_since or ngx_now()
                    if ngx_now() - quiet_since >= EXIT_QUIET then
                        break
                    end
                end
                ngx_sleep(EXIT_POLL)
            end
            -- A result is queued before it stops counting as in flight, so
            -- this last drain hands out everything that is left.
            deliver()
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


-- Wakes every waiter with `err`: their calls may still finish in the
-- runtime, but no dispatcher can deliver the results now.
local function fail_waiters(err)
    for id, slot in pairs(waiting) do
        waiting[id] = nil
        slot.err = err
        slot.sema:post(1)
    end
    nwaiting = 0
end


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
    last_failure = tostring(ok and err or res)
    dispatcher_restarts = dispatcher_restarts + 1
    log(ERR, "etcd_grpc dispatcher stopped: ", last_failure,
        "; restart ", dispatcher_restarts, " in ", restart_delay, " s")
    fail_waiters(last_failure)
    if worker_exiting() then
        dispatcher = "stopped"
        return
    end
    -- Results already queued survive in the runtime; a new dispatcher
    -- delivers them. Until it runs, calls fail at once (see call()).
    dispatcher = "backoff"
    local delay = restart_delay
    restart_delay = math_min(restart_delay * 2, RESTART_MAX)
    local tok, terr = timer_at(delay, function(premature2)
        if premature2 then
            dispatcher = "stopped"
            return
        end
        dispatcher = "stopped"
        start_dispatcher()
    end)
    if not tok then
        dispatcher = "stopped"
        log(WARN, "etcd_grpc: failed to schedule the dispatcher's restart: ", terr)
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


local exit_watch_armed = false


local function ensure_dispatcher()
    if dispatcher == "running" or dispatcher == "starting" then
        return true
    end
    if dispatcher == "done" then
        return nil, "closed"
    end
    if dispatcher == "backoff" then
        return nil, last_failure
    end
    local ok, err = start_dispatcher()
    if not ok then
        return nil, err
    end
    if not exit_watch_armed then
        ok, err = timer_at(EXIT_WATCH_DELAY, exit_watch)
        if ok then
            exit_watch_armed = true
        else
            log(WARN, "etcd_grpc: failed to start exit watch: ", err)
        end
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


-- Writes the warnings the runtime queued (an unsafe ssl_verify, a refused
-- password) to the error log; returns its arguments. A call that went
-- through the dispatcher leaves that to its drain (deliver).
local function flush_notices(...)
    local list = core.notices()
    if list then
        for i = 1, #list do
            log(WARN, list[i])
        end
    end
    return ...
end


local function await(client, op, args, timeout)
    local id, err, misuse = client:submit(op, args, timeout)
    if not id then
        -- Nothing will be drained for it (a connection it made may have
        -- queued a notice).
        return flush_notices(nil, err, misuse)
    end

    local slot = acquire_slot()
    waiting[id] = slot
    nwaiting = nwaiting + 1
    local ok, werr = slot.sema:wait(timeout + WAIT_MARGIN)

    if not ok then
        -- The runtime missed its own deadline (or the wait was aborted):
        -- forget the call; a late result finds no waiter and is dropped.
        if waiting[id] then
            waiting[id] = nil
            nwaiting = nwaiting - 1
        end
        return nil, werr == "timeout" and "timeout" or tostring(werr)
    end

    local res, rerr = slot.res, slot.err
    slot.res, slot.err = nil, nil
    release_slot(slot)
    return res, rerr
end


local function dispatch(client, op, args, timeout)
    local phase = get_phase and get_phase()
    if YIELDABLE[phase] then
        local ok, err = ensure_dispatcher()
        if ok then
            return await(client, op, args, timeout)
        end
        if err ~= "closed" then
            -- No dispatcher: fail at once rather than block the event loop
            -- (or log once per call).
            return flush_notices(nil, err)
        end
        -- The dispatcher has ended in an exiting worker, but a request it
        -- accepted earlier still calls: block briefly, as long as the
        -- runtime is there (else this answers "closed").
    end
    if phase == "init" then
        return flush_notices(client:call_once(op, args, timeout))
    end
    return flush_notices(client:call(op, args, timeout))
end


-- Runs `op` with `args` on `client` (a native client) within `timeout`
-- seconds. Returns the reply table, or nil and an error string, plus
-- `true` as a third value when the arguments were unusable (the façade
-- raises those).
_M.call = dispatch


-- Figures about this worker's hand-off, merged with the runtime's.
function _M.stats()
    local s = core.stats() or {}
    s.pending = nwaiting
    s.pooled_slots = pool_n
    s.dispatcher = dispatcher
    s.dispatcher_restarts = dispatcher_restarts
    return s
end


return _M
