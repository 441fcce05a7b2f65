# The config mirror: a worker's copy of a prefix, kept equal to etcd's
# through compactions, restarts and a store going backwards, on the
# worker's one Watch stream. etcd sends progress notifications every
# 100 ms here, so idle prefixes move forward quickly.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';

BEGIN {
    $ENV{ETCD_GRPC_TEST_ETCD_ARGS} = '--experimental-watch-progress-notify-interval=100ms';
}

use EtcdGrpcTest;

master_on();
workers(2);
run_tests();

__DATA__

=== TEST 1: 10,000 random puts/deletes over 300 keys, two compactions and an etcd restart: both workers' mirrors equal a readdir
--- http_config
    lua_shared_dict mt1 1m;
    init_worker_by_lua_block {
        local cli = require("etcd_grpc_test").client({ serializer = "raw" })
        -- init_worker cannot yield: the first load takes the blocking path
        local m = assert(cli:mirror("/m1/"))
        ngx.timer.at(0, function()
            local dict, id = ngx.shared.mt1, ngx.worker.id()
            while not ngx.worker.exiting() do
                local target = dict:get("target")
                if target and not dict:get("result:" .. id) then
                    local reached = m:wait(target, 30)
                    local res = assert(cli:readdir("/m1/", { timeout = 10 }))
                    local kvs, same = res.body.kvs or {}, true
                    for _, kv in ipairs(kvs) do
                        if m:get(kv.key) ~= kv.value then same = false end
                    end
                    local n = 0
                    for k, v in m:pairs() do
                        n = n + 1
                    end
                    same = same and n == #kvs and m:count() == #kvs
                    dict:set("result:" .. id, "reached " .. tostring(reached)
                             .. ", equal " .. tostring(same)
                             .. ", keys " .. tostring(#kvs > 100))
                end
                ngx.sleep(0.05)
            end
        end)
    }
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local N, THREADS = 10000, 8
            local ctl = "$TEST_NGINX_ETCDCTL --endpoints=$TEST_NGINX_ETCD_HOST "
            local done, last = 0, 0
            local function op(cli, i)
                while true do
                    local k = "/m1/" .. math.random(300)
                    local res
                    if math.random() < 0.3 then
                        res = cli:delete(k)
                    else
                        res = cli:set(k, "v" .. i)
                    end
                    if res and res.status == 200 then
                        local rev = tonumber(res.body.header.revision)
                        if rev > last then last = rev end
                        return
                    end
                    ngx.sleep(0.05)
                end
            end
            local threads = {}
            for th = 1, THREADS do
                threads[th] = ngx.thread.spawn(function()
                    local cli = t.client({ serializer = "raw", timeout = 2 })
                    for i = th, N, THREADS do
                        op(cli, i)
                        done = done + 1
                        if th == 1 and (i == 2001 or i == 7001) then
                            os.execute(ctl .. "compact " .. last .. " >/dev/null 2>&1")
                        elseif th == 1 and i == 4001 then
                            os.execute("$TEST_NGINX_ETCD_RESTART 0.3 >/dev/null 2>&1")
                        end
                    end
                end)
            end
            for th = 1, THREADS do ngx.thread.wait(threads[th]) end
            local cli = t.client({ serializer = "raw" })
            local res = assert(cli:set("/m1-end", "x"))
            local dict = ngx.shared.mt1
            dict:set("target", tonumber(res.body.header.revision))
            for _ = 1, 600 do
                if dict:get("result:0") and dict:get("result:1") then break end
                ngx.sleep(0.1)
            end
            ngx.say("ops: ", done)
            ngx.say("worker 0: ", dict:get("result:0"))
            ngx.say("worker 1: ", dict:get("result:1"))
        }
    }
--- response_body
ops: 10000
worker 0: reached true, equal true, keys true
worker 1: reached true, equal true, keys true
--- timeout: 180



=== TEST 2: an idle prefix survives two compactions and stream breaks with 0 resyncs
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw", timeout = 3 })
            assert(cli:set("/m2/a", "1"))
            local m = assert(cli:mirror("/m2/"))
            local ctl = "$TEST_NGINX_ETCDCTL --endpoints=$TEST_NGINX_ETCD_HOST "
            local moved = true
            for _ = 1, 2 do
                local r
                for i = 1, 20 do r = assert(cli:set("/m2-other/" .. i, "x")) end
                r = tonumber(r.body.header.revision)
                -- progress notifications carry the idle copy to r
                moved = m:wait(r, 5) and moved
                os.execute(ctl .. "compact " .. r .. " >/dev/null 2>&1")
                -- the stream breaks: the watcher resumes after its revision
                os.execute("$TEST_NGINX_ETCD_RESTART 0.3 >/dev/null 2>&1")
            end
            local w = t.set_until_ok(cli, "/m2/b", "2")
            ngx.say("idle copy moved with progress: ", moved)
            ngx.say("write seen: ", m:wait(w.body.header.revision, 10), " ", m:get("/m2/b"))
            local s = m:stats()
            ngx.say("resyncs: ", s.resyncs, ", keys: ", s.keys)
        }
    }
--- response_body
idle copy moved with progress: true
write seen: true 2
resyncs: 0, keys: 2
--- timeout: 40



=== TEST 3: etcd restarted from an empty store (revision goes backwards): exactly one full reload
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw", timeout = 3 })
            for i = 1, 30 do assert(cli:set("/m3/" .. i, "v")) end
            local resyncs = 0
            local m = assert(cli:mirror("/m3/", { on_change = function(ev)
                if ev.type == "resync" then resyncs = resyncs + 1 end
            end }))
            ngx.say("keys before: ", m:count())
            os.execute("$TEST_NGINX_ETCD_RESTART 0.3 wipe >/dev/null 2>&1")
            -- etcd back (its start and the stream's backoff can take
            -- seconds on a loaded machine), then the reload and the write:
            -- the write's revision is below the copy's, so wait() alone
            -- would not tell
            local w = t.set_until_ok(cli, "/m3/new", "n")
            for _ = 1, 200 do
                if m:stats().resyncs > 0 and m:get("/m3/new") then break end
                ngx.sleep(0.1)
            end
            ngx.say("write seen: ", w ~= nil and m:get("/m3/new") == "n")
            ngx.sleep(1)    -- no second reload follows
            local s = m:stats()
            ngx.say("resyncs: ", s.resyncs, ", on_change resync: ", resyncs)
            ngx.say("keys after: ", m:count(), " ", m:get("/m3/new"), " ", m:get("/m3/1"))
            ngx.say("last_error names it: ", (s.last_error or ""):find("backwards", 1, true) ~= nil)
        }
    }
--- response_body
keys before: 30
write seen: true
resyncs: 1, on_change resync: 1
keys after: 1 n nil
last_error names it: true
--- timeout: 40



=== TEST 4: a write reaches both workers' mirrors within 100 ms (median of 20, observed from another request)
--- http_config
    lua_shared_dict mt4 1m;
    init_worker_by_lua_block {
        local cli = require("etcd_grpc_test").client({ serializer = "raw" })
        local dict, id = ngx.shared.mt4, ngx.worker.id()
        assert(cli:mirror("/m4/", { on_change = function(ev)
            dict:set("rev:" .. id, tonumber(ev.revision))
        end }))
    }
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local dict = ngx.shared.mt4
            local lat = {}
            for i = 1, 20 do
                ngx.update_time()
                local t0 = ngx.now()
                local rev = tonumber(assert(cli:set("/m4/k", tostring(i))).body.header.revision)
                while (dict:get("rev:0") or 0) < rev or (dict:get("rev:1") or 0) < rev do
                    ngx.sleep(0.001)
                    ngx.update_time()
                    if ngx.now() - t0 > 5 then break end
                end
                lat[i] = ngx.now() - t0
            end
            table.sort(lat)
            local median = (lat[10] + lat[11]) / 2
            ngx.log(ngx.INFO, "mirror write-to-both-workers median: ", median * 1000, " ms")
            ngx.say("median under 100 ms: ", median < 0.1)
        }
    }
--- response_body
median under 100 ms: true
--- timeout: 40



=== TEST 5: 50 mirrors share the worker's one Watch stream and one connection; same config and prefix, same object
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local etcd = require "etcd_grpc"
            local cli = t.client({ serializer = "raw" })
            local ms = {}
            for i = 1, 50 do ms[i] = assert(cli:mirror("/m5/" .. i .. "/")) end
            local other = t.client({ serializer = "raw" })
            ngx.say("same object: ", other:mirror("/m5/7/") == ms[7],
                    ", other prefix: ", cli:mirror("/m5/7") ~= ms[7])
            local w = assert(cli:set("/m5/33/k", "v"))
            ngx.say("seen: ", ms[33]:wait(w.body.header.revision, 5), " ", ms[33]:get("/m5/33/k"),
                    " ", ms[34]:get("/m5/33/k"))
            local s = etcd.stats()
            ngx.say("watchers: ", s.watchers, ", watch streams: ", s.watch_streams,
                    ", mirrors: ", #s.mirrors)
            ngx.say("connections: ", s.connections)
        }
    }
--- response_body
same object: true, other prefix: true
seen: true v nil
watchers: 51, watch streams: 1, mirrors: 51
connections: 1



=== TEST 6: values deserialized once and held once; empty values; pairs of one revision; a broken stream resumes without a reload
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ timeout = 3 })
            local raw = t.client({ serializer = "raw", timeout = 3 })
            assert(cli:set("/m6/a", { n = 1 }))
            assert(raw:set("/m6/empty", ""))
            local m = assert(cli:mirror("/m6/"))
            ngx.say("held once: ", rawequal(m:get("/m6/a"), m:get("/m6/a")), " n=", m:get("/m6/a").n)
            ngx.say("empty: ", m:get("/m6/empty"), ", count: ", m:count())
            local it = m:pairs()
            assert(cli:set("/m6/b", { n = 2 }))
            local w = assert(cli:set("/m6/c", { n = 3 }))
            m:wait(w.body.header.revision, 5)
            local seen = {}
            for k in it do seen[#seen + 1] = k end
            table.sort(seen)
            ngx.say("pairs taken before: ", table.concat(seen, " "))
            os.execute("$TEST_NGINX_ETCD_RESTART 0.3 >/dev/null 2>&1")
            w = t.set_until_ok(cli, "/m6/d", { n = 4 })
            ngx.say("after restart: ", m:wait(w.body.header.revision, 10), " ", m:get("/m6/d").n,
                    ", count: ", m:count(), ", resyncs: ", m:stats().resyncs,
                    ", revision: ", m:revision() == w.body.header.revision)
        }
    }
--- response_body
held once: true n=1
empty: nil, count: 2
pairs taken before: /m6/a /m6/empty
after restart: true 4, count: 5, resyncs: 0, revision: true
--- timeout: 30



=== TEST 7: misuse raises; wait times out; close ends it
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local function try(f, ...)
                local ok, err = pcall(f, ...)
                ngx.say(ok and "ok" or (err:gsub("^.-:%d+: ", "")))
            end
            try(cli.mirror, cli, {})
            try(cli.mirror, cli, "/m7/", { on_change = 1 })
            local m = assert(cli:mirror("/m7/"))
            try(m.get, nil, "/m7/x")
            try(m.wait, m, "x", 1)
            try(m.wait, m, 0/0, 1)
            try(m.wait, m, 1, -1)
            local rev = tonumber(m:revision())
            ngx.say("wait: ", m:wait(rev + 1000, 0.2))
            ngx.say("close: ", m:close(), " ", select(2, m:close()))
            try(m.get, m, "/m7/x")
            ngx.say("new after close: ", cli:mirror("/m7/") ~= m)
        }
    }
--- response_body
key must be a string
opts.on_change must be a function
etcd_grpc: call mirror methods as m:method(...)
revision must be a number or a decimal string
revision must be a number or a decimal string
timeout must be a non-negative number
wait: niltimeout
close: true closed
etcd_grpc: the mirror is closed
new after close: true
