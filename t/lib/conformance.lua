-- Differential conformance harness (t/conformance.t): runs each operation
-- once through etcd_grpc (native gRPC, against TEST_NGINX_ETCD_HOST) and once
-- through gateway_client (lua-resty-etcd's HTTP mode look-alike, against the
-- gateway-enabled etcd TEST_NGINX_ETCD_GW_HOST), in the same order and with
-- the same keys, and compares the two results field by field.
--
--   local C = require "conformance"
--   C.run({
--       { "get: miss", method = "get",
--         function(c, s) return c:get("/cf/none") end },
--       ...
--   })
--
-- An operation is a table:
--   [1]      its name (printed);
--   [2]      function(cli, s) returning what the client method returned
--            (res, err).  `cli` is the side's default client; `s` is the
--            side's state (s.side = "grpc" / "gw", s.client(opts) for a
--            client with other key_prefix/serializer, s.lease, and whatever
--            `save` stored);
--   method   the client method(s) it needs (string or list): when etcd_grpc
--            lacks one, the op prints `DIFF <name>: method missing (<m>)`
--            and runs on neither side;
--   save     function(s, res, err) run on each side after the call, to keep
--            side-specific values (revisions) for later operations;
--   ignore   list of body paths (globs, `*` = one path segment, e.g.
--            "kvs[*].mod_revision") not compared;
--   no_rev   true: revision fields (revision, create_revision,
--            mod_revision, compact_revision) are not compared at all.
-- An entry { setup = function(g, w) ... end } runs once with both sides'
-- states (lease grants, compaction) and prints nothing.
--
-- Each operation prints one line: `ok <name>`, or `DIFF <name>: <diffs>`,
-- or, with etcd 3.4 and a difference listed in the KNOWN 3.4 list of
-- t/conformance.t (exported as TEST_NGINX_CONFORMANCE_KNOWN34),
-- `ok <name> (known 3.4 difference: <reason>)`.
--
-- Revisions: the two etcds are fresh and every write runs on both, so their
-- revisions normally move in step.  Revision fields are compared through a
-- correspondence map (grpc revision <-> gateway revision) which starts with
-- the stores' current revisions at the start of the block and learns each
-- new pair the first time it is seen; a revision that contradicts the map is
-- a difference.  After an operation with a difference, the map is re-synced
-- from the stores' current revisions, so one divergence (e.g. a write that
-- failed on one side) does not make every later operation fail.

local cjson = require "cjson.safe"
local gateway_client = require "gateway_client"

local ngx = ngx
local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local tab_sort = table.sort
local tab_concat = table.concat
local str_format = string.format


local _M = {}


local PROBE_KEY = "/__conformance_probe__"

-- header fields that must differ between two servers
local ALWAYS_IGNORED = {
    "^header%.cluster_id$", "^header%.member_id$", "^header%.raft_term$",
    "%.header%.cluster_id$", "%.header%.member_id$", "%.header%.raft_term$",
}

local REV_FIELDS = {
    revision = true, create_revision = true, mod_revision = true,
    compact_revision = true,
}


-- ------------------------------------------------------------ environment

local function env(name)
    local v = os.getenv(name)
    if v == nil or v == "" then
        return nil
    end
    return v
end


function _M.config()
    local known = {}
    local raw = env("TEST_NGINX_CONFORMANCE_KNOWN34")
    if raw then
        known = assert(cjson.decode(raw), "bad TEST_NGINX_CONFORMANCE_KNOWN34")
    end
    return {
        grpc_host = assert(env("TEST_NGINX_ETCD_HOST"), "TEST_NGINX_ETCD_HOST"),
        gw_host = assert(env("TEST_NGINX_ETCD_GW_HOST"), "TEST_NGINX_ETCD_GW_HOST"),
        version = env("TEST_NGINX_ETCD_VERSION") or "",
        etcdctl = env("TEST_NGINX_ETCDCTL"),
        known34 = known,
        verbose = env("TEST_NGINX_CONFORMANCE_VERBOSE") ~= nil,
    }
end


-- ------------------------------------------------------------ rendering

local function render(v)
    if v == nil then
        return "<absent>"
    end
    if v == cjson.null then
        return "null"
    end
    local t = type(v)
    local s
    if t == "string" then
        s = (str_format("%q", v):gsub("\\\n", "\\n"))
    elseif t == "table" then
        s = cjson.encode(v) or tostring(v)
    else
        s = tostring(v)
    end
    if #s > 100 then
        s = s:sub(1, 97) .. "..."
    end
    if t ~= "string" and t ~= "table" and t ~= "nil" then
        s = s .. "(" .. t .. ")"
    end
    return s
end
_M.render = render


-- ------------------------------------------------------------ revisions

local Revs = {}
Revs.__index = Revs

function _M.new_revs()
    return setmetatable({ ab = {}, ba = {} }, Revs)
end

-- true when grpc revision `a` corresponds to gateway revision `b`.  A pair
-- seen before must match; a new pair is learnt when it keeps the stores'
-- current offset (a - b, set by force() or by the first pair), since both
-- stores get the same writes: a write counted twice on one side shows up.
function Revs:same(a, b)
    local ma, mb = self.ab[a], self.ba[b]
    if ma ~= nil or mb ~= nil then
        return ma == b
    end
    local na, nb = tonumber(a), tonumber(b)
    if not na or not nb then
        return a == b
    end
    if self.offset == nil then
        self.offset = na - nb
    elseif na - nb ~= self.offset then
        return false
    end
    self.ab[a], self.ba[b] = b, a
    return true
end

-- records a <-> b as the stores' current correspondence, dropping pairs that
-- contradict it
function Revs:force(a, b)
    local old_b, old_a = self.ab[a], self.ba[b]
    if old_b ~= nil then self.ba[old_b] = nil end
    if old_a ~= nil then self.ab[old_a] = nil end
    self.ab[a], self.ba[b] = b, a
    self.offset = (tonumber(a) or 0) - (tonumber(b) or 0)
end


-- ------------------------------------------------------------ comparing

local function glob_to_pattern(g)
    local p = g:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", "[^.%%[%%]]*")
    return "^" .. p .. "$"
end


local function make_ignored(ignore)
    local pats = {}
    for _, p in ipairs(ALWAYS_IGNORED) do
        pats[#pats + 1] = p
    end
    for _, g in ipairs(ignore or {}) do
        pats[#pats + 1] = glob_to_pattern(g)
    end
    return function(path)
        for _, p in ipairs(pats) do
            if path:find(p) then
                return true
            end
        end
        return false
    end
end


local function sorted_keys(a, b)
    local seen, keys = {}, {}
    for _, t in ipairs({ a, b }) do
        for k in pairs(t) do
            if not seen[k] then
                seen[k] = true
                keys[#keys + 1] = k
            end
        end
    end
    tab_sort(keys, function(x, y)
        local tx, ty = type(x), type(y)
        if tx ~= ty then
            return tx == "number"
        end
        if tx == "number" or tx == "string" then
            return x < y
        end
        return tostring(x) < tostring(y)
    end)
    return keys
end


local function child_path(path, k)
    if type(k) == "number" then
        return path .. "[" .. k .. "]"
    end
    if path == "" then
        return tostring(k)
    end
    return path .. "." .. tostring(k)
end


local function walk(a, b, path, st)
    if st.ignored(path) then
        return
    end
    local last = path:match("([%w_]+)$")
    if last and REV_FIELDS[last] then
        if st.no_rev then
            return
        end
        if type(a) == "string" and type(b) == "string" and st.revs then
            if not st.revs:same(a, b) then
                st.add(path, a, b, " (revisions do not correspond)")
            end
            return
        end
    end
    local ta, tb = type(a), type(b)
    if ta ~= tb then
        st.add(path, a, b)
        return
    end
    if ta == "table" then
        for _, k in ipairs(sorted_keys(a, b)) do
            walk(a[k], b[k], child_path(path, k), st)
        end
        return
    end
    if a ~= b then
        st.add(path, a, b)
    end
end


-- compare(a, b, ignore, opts): deep comparison of two decoded bodies (a from
-- etcd_grpc, b from the gateway).  `ignore` is a list of path globs; opts:
-- `revs` (a map from new_revs(), revision fields compared through it),
-- `no_rev` (revision fields skipped), `prefix` (path prefix).  Returns the
-- list of differences as strings "path: <a> vs <b>", and the list of their
-- paths.  header.cluster_id / member_id / raft_term are always ignored.
function _M.compare(a, b, ignore, opts)
    opts = opts or {}
    local diffs, paths = {}, {}
    local st = {
        ignored = make_ignored(ignore),
        revs = opts.revs,
        no_rev = opts.no_rev,
        add = function(path, x, y, note)
            diffs[#diffs + 1] = (path == "" and "body" or path) .. ": "
                                .. render(x) .. " vs " .. render(y) .. (note or "")
            paths[#paths + 1] = path == "" and "body" or path
        end,
    }
    -- learn the top-level header revision first, so that it anchors the map
    if type(a) == "table" and type(b) == "table"
       and type(a.header) == "table" and type(b.header) == "table"
    then
        walk(a.header.revision, b.header.revision, "header.revision", st)
        local inner = st.ignored
        st.ignored = function(path)
            return path == "header.revision" or inner(path)
        end
    end
    walk(a, b, opts.prefix or "", st)
    return diffs, paths
end


-- Compares two call results (res, err) of the two sides: both must fail or
-- both succeed; failures compare their error strings; results compare
-- status and body.  Returns differences and paths, as compare().
function _M.compare_results(ra, ea, rb, eb, ignore, opts)
    local diffs, paths = {}, {}
    local function add(path, s)
        diffs[#diffs + 1] = s
        paths[#paths + 1] = path
    end
    if ra == nil or rb == nil then
        if ra == nil and rb == nil then
            if tostring(ea) ~= tostring(eb) then
                add("err", "err: " .. render(ea) .. " vs " .. render(eb))
            end
        elseif ra == nil then
            add("result", "result: nil, " .. render(ea) .. " vs res (status "
                          .. tostring(type(rb) == "table" and rb.status) .. ")")
        else
            add("result", "result: res (status "
                          .. tostring(type(ra) == "table" and ra.status)
                          .. ") vs nil, " .. render(eb))
        end
        return diffs, paths
    end
    if type(ra) ~= "table" or type(rb) ~= "table" then
        add("result", "result: " .. render(ra) .. " vs " .. render(rb))
        return diffs, paths
    end
    if ra.status ~= rb.status then
        add("status", "status: " .. render(ra.status) .. " vs " .. render(rb.status))
    end
    if type(ra.body) ~= type(rb.body) then
        add("body", "body: " .. render(ra.body) .. " vs " .. render(rb.body))
        return diffs, paths
    end
    local d, p = _M.compare(ra.body, rb.body, ignore, opts)
    for i = 1, #d do
        add(p[i], d[i])
    end
    return diffs, paths
end


-- ------------------------------------------------------------ sides

local function new_side(side, host)
    local s = { side = side, host = host, clients = {} }
    function s.client(opts)
        opts = opts or {}
        local id = (opts.key_prefix or "") .. "\0" .. (opts.serializer or "json")
        local cli = s.clients[id]
        if cli then
            return cli
        end
        local err
        if side == "grpc" then
            cli, err = require("etcd_grpc").new({
                http_host = host,
                key_prefix = opts.key_prefix,
                serializer = opts.serializer,
            })
        else
            cli, err = gateway_client.new({
                http_host = host,
                key_prefix = opts.key_prefix,
                serializer = opts.serializer,
            })
        end
        if not cli then
            error("cannot create the " .. side .. " client: " .. tostring(err))
        end
        s.clients[id] = cli
        return cli
    end
    s.cli = s.client()
    return s
end


local function current_revision(s)
    local res, err = s.cli:get(PROBE_KEY)
    if not res then
        return nil, err
    end
    return res.body and res.body.header and res.body.header.revision
end


local function resync(g, w, revs)
    local a = current_revision(g)
    local b = current_revision(w)
    if a and b then
        revs:force(a, b)
        return true
    end
    return false
end


-- ------------------------------------------------------------ setup helpers

local function shell(cmd)
    local f = assert(io.popen(cmd .. " 2>&1"))
    local out = f:read("*a")
    f:close()
    return out
end


local function etcdctl(cfg, args)
    assert(cfg.etcdctl, "TEST_NGINX_ETCDCTL is not set: no etcdctl found")
    return shell("ETCDCTL_API=3 '" .. cfg.etcdctl .. "' --endpoints=" .. cfg.grpc_host
                 .. " " .. args)
end


-- Grants a lease with the same ID on both stores: etcdctl on the etcd_grpc
-- store (its gateway is disabled), then /v3/lease/grant with that ID on the
-- gateway store.  Stores the ID (decimal string) in g.lease / w.lease.
function _M.grant_lease(g, w, ttl)
    local cfg = g.cfg
    local out = etcdctl(cfg, "lease grant " .. tostring(ttl) .. " -w json")
    local id = out:match('"ID":(%d+)')
    if not id then
        error("etcdctl lease grant failed: " .. out)
    end
    local res, err = w.cli:raw_post("/lease/grant", { TTL = ttl, ID = id })
    if not res or res.status ~= 200 or not res.body or res.body.ID ~= id then
        error("gateway lease grant failed: " .. tostring(err or cjson.encode(res.body)))
    end
    g.lease, w.lease = id, id
    return id
end


-- Compacts each store at its own revision (revision = the side's value of
-- state field `field`): etcdctl on the etcd_grpc store, /v3/kv/compaction on
-- the gateway store.
function _M.compact(g, w, field)
    local a, b = g[field], w[field]
    assert(a and b, "compact: no revision saved as " .. field)
    local out = etcdctl(g.cfg, "compact " .. a .. " --physical")
    if not out:find("compacted revision", 1, true) then
        error("etcdctl compact failed: " .. out)
    end
    local res, err = w.cli:raw_post("/kv/compaction", { revision = b, physical = true })
    if not res or res.status ~= 200 then
        error("gateway compaction failed: " .. tostring(err or cjson.encode(res.body)))
    end
end


-- Deletes every key under `prefix` on both stores, without going through
-- the code under test (etcdctl / the gateway), so that a block starts from
-- the same (empty) state even against a reused etcd.
function _M.clean(g, w, prefix)
    local out = etcdctl(g.cfg, "del --prefix '" .. prefix .. "'")
    if not out:match("^%d+%s*$") then
        error("etcdctl del failed: " .. out)
    end
    local b64 = ngx.encode_base64
    local res, err = w.cli:raw_post("/kv/deleterange", {
        key = b64(prefix),
        range_end = b64(gateway_client.get_range_end(prefix)),
    })
    if not res or res.status ~= 200 then
        error("gateway deleterange failed: " .. tostring(err or cjson.encode(res.body)))
    end
end


-- the revision a side is at now (decimal string)
_M.current_revision = current_revision


-- ------------------------------------------------------------ runner

local function missing_methods(cli, method)
    if method == nil then
        return nil
    end
    local list = type(method) == "table" and method or { method }
    local missing = {}
    for _, m in ipairs(list) do
        if type(cli[m]) ~= "function" then
            missing[#missing + 1] = m
        end
    end
    if #missing > 0 then
        return tab_concat(missing, ", ")
    end
end


-- The reason of the KNOWN 3.4 difference of op `name` when `cfg.version`
-- is 3.4.* and every differing path is allowed by that entry; else nil.
local function known34_applies(cfg, name, paths)
    if not cfg.version:find("^3%.4") then
        return nil
    end
    local k = cfg.known34[name]
    if not k or #paths == 0 then
        return nil
    end
    local pats = {}
    for _, g in ipairs(k.paths or {}) do
        pats[#pats + 1] = glob_to_pattern(g)
    end
    for _, p in ipairs(paths) do
        local allowed = false
        for _, pat in ipairs(pats) do
            if p:find(pat) then
                allowed = true
                break
            end
        end
        if not allowed then
            return nil
        end
    end
    return k.reason
end
_M.known34_applies = known34_applies


-- run(ops, opts): opts.clean = a key prefix deleted on both stores first.
function _M.run(ops, opts)
    local cfg = _M.config()
    local g = new_side("grpc", cfg.grpc_host)
    local w = new_side("gw", cfg.gw_host)
    g.cfg, w.cfg = cfg, cfg
    local revs = _M.new_revs()
    local need_resync = true
    if opts and opts.clean then
        _M.clean(g, w, opts.clean)
    end

    for _, op in ipairs(ops) do
        if op.setup then
            op.setup(g, w)
            need_resync = true
            goto continue
        end

        do
            local name = op[1]
            if need_resync then
                resync(g, w, revs)
                need_resync = false
            end

            local missing = missing_methods(g.cli, op.method)
            if missing then
                ngx.say("DIFF ", name, ": method missing (", missing, ")")
                goto continue
            end

            local ok_g, rg, eg = pcall(op[2], g.cli, g)
            local ok_w, rw, ew = pcall(op[2], w.cli, w)
            if cfg.verbose then
                local function show(ok, r, e)
                    if not ok then
                        return "raised " .. tostring(r)
                    end
                    if type(r) ~= "table" then
                        return "nil, " .. tostring(e)
                    end
                    return tostring(r.status) .. " " .. (cjson.encode(r.body) or "?")
                end
                ngx.log(ngx.WARN, "conformance: ", name, "\n  grpc: ", show(ok_g, rg, eg),
                        "\n  gw:   ", show(ok_w, rw, ew))
            end
            local diffs, paths
            if not ok_g or not ok_w then
                diffs, paths = {}, {}
                if not ok_g then
                    diffs[#diffs + 1] = "etcd_grpc side raised: " .. tostring(rg)
                    paths[#paths + 1] = "raise"
                end
                if not ok_w then
                    diffs[#diffs + 1] = "gateway side raised: " .. tostring(rw)
                    paths[#paths + 1] = "raise"
                end
            else
                diffs, paths = _M.compare_results(rg, eg, rw, ew, op.ignore,
                                                  { revs = revs, no_rev = op.no_rev })
                if op.save then
                    local ok1, e1 = pcall(op.save, g, rg, eg)
                    local ok2, e2 = pcall(op.save, w, rw, ew)
                    if not ok1 then
                        diffs[#diffs + 1] = "save failed on etcd_grpc side: " .. tostring(e1)
                        paths[#paths + 1] = "save"
                    end
                    if not ok2 then
                        diffs[#diffs + 1] = "save failed on gateway side: " .. tostring(e2)
                        paths[#paths + 1] = "save"
                    end
                end
            end

            if #diffs == 0 then
                ngx.say("ok ", name)
            else
                local reason = known34_applies(cfg, name, paths)
                if reason then
                    ngx.say("ok ", name, " (known 3.4 difference: ", reason, ")")
                else
                    ngx.say("DIFF ", name, ": ", tab_concat(diffs, "; "))
                    need_resync = true
                end
            end
        end

        ::continue::
    end
end


-- An operation's `after` hook that stores the answer's header.revision in
-- the shared state under `field`.
function _M.save_revision(field)
    return function(s, res)
        s[field] = res and res.body and res.body.header and res.body.header.revision
    end
end


-- ------------------------------------------------------------ watch runner
--
-- watch_run(scenarios, opts) (t/watch-conformance.t): each scenario opens a
-- watch on both stores, does the same writes on both (each side with its
-- own client), reads the same number of responses from each reader and
-- compares them in order.  A scenario is a table:
--   [1]      its name (printed as `ok <name>` / `DIFF <name>: <diffs>`);
--   before   function(cli, s) run on each side before the watch (history);
--   setup    function(g, w) run once with both sides' states after
--            `before` (compaction);
--   watch    function(cli, s) returning reader, err (cli:watch / watchdir);
--   writes   function(cli, s) run on each side after the first response
--            (the created ack) was read from both readers, so that the
--            watch is known to be registered before the writes;
--   n        number of reader() calls per side, the created ack included;
--   events   flatten mode: after the created ack, read responses until this
--            many events were received (or a read fails), and compare the
--            ack and the concatenated event list instead of the responses
--            one by one (for replayed history, which etcd may batch into
--            one response or several);
--   ignore   body path globs not compared.
-- A reader() call is compared as { chunk = <decoded line>, err = <err> };
-- revision fields go through the revision map, re-synced from the stores'
-- current revisions before each scenario's watch.
function _M.watch_run(scenarios, opts)
    local cfg = _M.config()
    local g = new_side("grpc", cfg.grpc_host)
    local w = new_side("gw", cfg.gw_host)
    g.cfg, w.cfg = cfg, cfg
    if opts and opts.clean then
        _M.clean(g, w, opts.clean)
    end

    local function read(reader)
        local ok, chunk, err = pcall(reader)
        if not ok then
            return { raised = tostring(chunk) }
        end
        return { chunk = chunk, err = err }
    end

    for _, sc in ipairs(scenarios) do
        local name = sc[1]
        local diffs = {}
        local function fail(msg)
            diffs[#diffs + 1] = msg
        end

        local ok_all, perr = pcall(function()
            if sc.before then
                sc.before(g.cli, g)
                sc.before(w.cli, w)
            end
            if sc.setup then
                sc.setup(g, w)
            end
            local revs = _M.new_revs()
            if not resync(g, w, revs) then
                fail("cannot read the stores' current revisions")
                return
            end

            local rg, eg = sc.watch(g.cli, g)
            local rw, ew = sc.watch(w.cli, w)
            if type(rg) ~= "function" or type(rw) ~= "function" then
                if type(rg) ~= type(rw) or tostring(eg) ~= tostring(ew) then
                    fail("watch: " .. render(rg) .. ", " .. render(eg) .. " vs "
                         .. render(rw) .. ", " .. render(ew))
                end
                return
            end

            local a, b = { read(rg) }, { read(rw) }
            if sc.writes then
                sc.writes(g.cli, g)
                sc.writes(w.cli, w)
            end

            local cmp_a, cmp_b
            if sc.events then
                local function flat(reader, first)
                    local evs, tail = {}, nil
                    while #evs < sc.events do
                        local r = read(reader)
                        if not r.chunk then
                            tail = r
                            break
                        end
                        local res = type(r.chunk) == "table" and r.chunk.result
                        if type(res) == "table" and type(res.events) == "table" then
                            for _, ev in ipairs(res.events) do
                                evs[#evs + 1] = ev
                            end
                        else
                            tail = r       -- a response without events
                            break
                        end
                    end
                    return { created = first, events = evs, stop = tail }
                end
                cmp_a, cmp_b = flat(rg, a[1]), flat(rw, b[1])
            else
                for i = 2, sc.n or 1 do
                    a[i] = read(rg)
                    b[i] = read(rw)
                end
                cmp_a, cmp_b = a, b
            end
            if cfg.verbose then
                ngx.log(ngx.WARN, "watch conformance: ", name,
                        "\n  grpc: ", cjson.encode(cmp_a) or "?",
                        "\n  gw:   ", cjson.encode(cmp_b) or "?")
            end
            local d = _M.compare(cmp_a, cmp_b, sc.ignore, { revs = revs })
            for _, x in ipairs(d) do
                fail(x)
            end
        end)
        if not ok_all then
            fail("raised: " .. tostring(perr))
        end

        if #diffs == 0 then
            ngx.say("ok ", name)
        else
            ngx.say("DIFF ", name, ": ", tab_concat(diffs, "; "))
        end
    end
end


return _M
