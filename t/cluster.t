# Clusters: a hung member is left on the per-call timeout, not after the
# ~15 s of HTTP/2 pings; leader changes lose and double no write; a full
# outage answers fast and heals at once; lua-resty-etcd's health_check.
# One three-member cluster serves every block (each leaves it whole).
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(2);

my @members = start_cluster(3);
for my $i (1 .. 3) {
    my $m = $members[$i - 1];
    $ENV{"TEST_NGINX_MEMBER_$i"} = "$m->{host} $m->{pid}";
    $ENV{"TEST_NGINX_RESTART_$i"} = $m->{restart};
}
$ENV{TEST_NGINX_CLUSTER} = join ' ', map { $_->{host} } @members;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => join('', map { "env TEST_NGINX_MEMBER_$_;\nenv TEST_NGINX_RESTART_$_;\n" } 1 .. 3)
                      . "env TEST_NGINX_CLUSTER;\nenv TEST_NGINX_ETCDCTL;\nenv TEST_NGINX_CLUSTER_NOTES;\n" . ($block->main_config // ''));
    $block->set_value(http_config => "    lua_shared_dict cl_ctl 1m;\n    lua_shared_dict cl_hc 1m;\n"
                      . ($block->http_config // ''));
    $block->set_value(timeout => 90) unless defined $block->timeout;
});

run_tests();

__DATA__

=== TEST 1: the used member frozen under 16 threads of gets (timeout 2): no read fails past 3 s, writes resume within 3 s
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            local cli = c.client({ timeout = 2 })
            assert(cli:set("/cl1/k", "v"))
            local used = c.used_member()
            ngx.say("one member used: ", used ~= nil)
            local stop, fails_end, writes_back = false, 0, nil
            local t0
            local threads = {}
            for i = 1, 16 do
                threads[i] = ngx.thread.spawn(function()
                    while not stop do
                        local res, err = cli:get("/cl1/k")
                        ngx.update_time()
                        if not res and t0 then
                            fails_end = math.max(fails_end, ngx.now() - t0)
                        end
                        ngx.sleep(0.01)
                    end
                end)
            end
            local writer = ngx.thread.spawn(function()
                while not stop do
                    -- only a write started after the freeze counts (one in
                    -- flight before it may still have been answered)
                    ngx.update_time()
                    local started = ngx.now()
                    local res = cli:set("/cl1/w", "x")
                    ngx.update_time()
                    if res and t0 and started > t0 and not writes_back then
                        writes_back = ngx.now() - t0
                    end
                    ngx.sleep(0.02)
                end
            end)
            ngx.sleep(0.5)
            c.frozen({ used }, 30, function()
                ngx.update_time()
                t0 = ngx.now()
                ngx.sleep(6)
            end)
            stop = true
            for i = 1, 16 do ngx.thread.wait(threads[i]) end
            ngx.thread.wait(writer)
            ngx.say("reads failing for at most 3 s: ", fails_end <= 3, c.note(fails_end))
            ngx.say("writes back within 3 s: ", writes_back ~= nil and writes_back <= 3, c.note(writes_back))
            ngx.say("moved off the frozen member: ", c.used_member() ~= used)
        }
    }
--- response_body
one member used: true
reads failing for at most 3 s: true
writes back within 3 s: true
moved off the frozen member: true
--- error_log eval
qr/cluster_test: /



=== TEST 2: a single endpoint that timed out once serves the very next call
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            local etcd = require "etcd_grpc"
            local m = c.member(2)
            local cli = assert(etcd.new({ http_host = m.host, timeout = 1 }))
            assert(cli:set("/cl2/k", "v"))
            local _, err
            c.frozen({ 2 }, 20, function()
                _, err = cli:get("/cl2/k")
            end)
            ngx.say("frozen: ", err)
            -- The next call gets 5 s, not 1: a member frozen for a second
            -- may have been the leader and lost an election, and its first
            -- linearizable read after the thaw waits for a read index from
            -- the new leader (once, in CI on 2 cores, longer than 1 s). A
            -- connection that stays stuck after a timeout fails it either way.
            local res, err2 = cli:get("/cl2/k", { timeout = 5 })
            ngx.say("next call: ", res and res.body.kvs[1].value or err2)
        }
    }
--- timeout: 15
--- response_body
frozen: timeout
next call: v



=== TEST 3: every member frozen: a get (timeout 1) errs within 1.5 s, at most 2 connections per worker, the first get after the thaw succeeds within 2 s
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            local cli = c.client({ timeout = 1 })
            assert(cli:set("/cl3/k", "v"))
            local reader = assert(cli:watchdir("/cl3/", { timeout = 30 }))
            reader()
            local most, slow, errs, seen = 0, 0, 0, {}
            c.frozen({ 1, 2, 3 }, 30, function()
                for _ = 1, 5 do
                    ngx.update_time()
                    local t0 = ngx.now()
                    local res, err = cli:get("/cl3/k")
                    ngx.update_time()
                    if not res then errs = errs + 1 end
                    slow = math.max(slow, ngx.now() - t0)
                    local n = 0
                    for i = 1, 3 do
                        n = n + c.connections(i)
                        for _, p in ipairs(require("etcd_grpc_test").local_ports(ngx.worker.pid(), c.member(i).port)) do
                            seen[p] = true
                        end
                    end
                    most = math.max(most, n)
                end
            end)
            local attempts = 0
            for _ in pairs(seen) do attempts = attempts + 1 end
            c.note("outage connections seen: " .. attempts)
            ngx.say("every get failed: ", errs == 5)
            ngx.say("each within 1.5 s: ", slow <= 1.5, c.note(slow))
            ngx.say("at most 2 connections: ", most <= 2, c.note(most))
            ngx.update_time()
            local t0 = ngx.now()
            local res, err = cli:get("/cl3/k")
            ngx.update_time()
            ngx.say("after the thaw: ", res and res.body.kvs[1].value or err,
                    " within 2 s: ", ngx.now() - t0 <= 2, c.note(ngx.now() - t0))
        }
    }
--- response_body
every get failed: true
each within 1.5 s: true
at most 2 connections: true
after the thaw: v within 2 s: true



=== TEST 4: health_check: every function, return value and log line (round-robin mode)
--- config
    location = /t {
        content_by_lua_block {
            package.path = "$TEST_NGINX_ROOT/lua/compat/?.lua;" .. package.path
            local hc = require "resty.etcd.health_check"
            ngx.say("same module: ", hc == require("etcd_grpc.health_check"),
                    " ", hc == require("etcd_grpc").health_check)
            hc.conf = nil
            ngx.say(hc.get_target_status("h"))
            ngx.say(hc.report_failure("h"))
            ngx.say(hc.get_check_mode(), " ", hc.ROUND_ROBIN_MODE, " ", hc.SHARED_DICT_MODE, " ", hc.DISABLED_MODE)
            ngx.say("init: ", hc.init({ fail_timeout = 1 }) == hc)
            ngx.say("again: ", select("#", hc.init({ fail_timeout = 5 })))
            ngx.say(hc.init({ shm_name = "nope" }))
            ngx.say(hc.conf.fail_timeout, " ", hc.conf.max_fails, " ", tostring(hc.conf.retry))
            ngx.say(hc.get_target_status(1))
            ngx.say(hc.report_failure(1))
            ngx.say(hc.get_target_status("http://a:1"))
            hc.report_failure("http://a:1")
            ngx.say(hc.get_target_status("http://a:1"))
            ngx.sleep(1.1)
            ngx.say(hc.get_target_status("http://a:1"))
            hc.report_failure("http://a:1")
            hc.disable()
            ngx.say(hc.get_check_mode(), " ", hc.conf.disabled, " ", hc.get_target_status("http://a:1"))
            ngx.say(hc.report_failure("http://a:1"))
            hc.conf = nil
            ngx.say("shared: ", hc.init({ shm_name = "cl_hc", max_fails = 2 }) == hc, " ", hc.get_check_mode())
            hc.report_failure("http://b:1")
            ngx.say(hc.get_target_status("http://b:1"))
            hc.report_failure("http://b:1")
            ngx.say(hc.get_target_status("http://b:1"))
            hc.conf = nil
        }
    }
--- response_body
same module: true true
niletcd health check uninitialized
niletcd health check uninitialized
round-robin round-robin shared-dict disabled
init: true
again: 0
nilfailed to get ngx.shared dict: nope
1 1 false
falseetcd host invalid
niletcd host invalid
true
falseendpoint: http://a:1 is unhealthy
true
disabled true true

shared: true shared-dict
true
false
--- error_log
healthy check use round robin
update endpoint: http://a:1 to unhealthy
healthy check use ngx.shared dict: cl_hc
update endpoint: http://b:1 to unhealthy
--- no_error_log
[error]



=== TEST 5: shared-dict mode across 2 workers: a member one worker's client found dead is unhealthy for the other; fail_timeout brings it back
--- http_config
    init_worker_by_lua_block {
        local hc = require "etcd_grpc.health_check"
        hc.conf = nil
        hc.init({ shm_name = "cl_hc", fail_timeout = 2, max_fails = 1 })
        local ctl = ngx.shared.cl_ctl
        local host = os.getenv("TEST_NGINX_MEMBER_3"):match("^(%S+)")
        local function poll(premature)
            if premature then return end
            local ask = ctl:get("ask")
            if ask then
                ctl:set("w" .. ngx.worker.id() .. "-" .. ask, tostring(hc.get_target_status(host)))
            end
            ngx.timer.at(0.05, poll)
        end
        ngx.timer.at(0, poll)
    }
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            local ctl = ngx.shared.cl_ctl
            local function ask(tag)
                ctl:set("ask", tag)
                ngx.sleep(0.3)
                return tostring(ctl:get("w0-" .. tag)) .. " " .. tostring(ctl:get("w1-" .. tag))
            end
            -- this worker's client times out on member 3 (frozen): it
            -- reports it, through the native client, to health_check
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = { c.member(3).host, c.member(1).host }, timeout = 1 }))
            c.frozen({ 3 }, 20, function()
                local _, err = cli:get("/cl5/k")
                ngx.say("frozen: ", err)
                local res = cli:get("/cl5/k")
                ngx.say("next call elsewhere: ", res ~= nil)
            end)
            ngx.say("both workers: ", ask("a"))
            ngx.sleep(2)
            ngx.say("after fail_timeout: ", ask("b"))
        }
    }
--- response_body
frozen: timeout
next call elsewhere: true
both workers: false false
after fail_timeout: true true
--- error_log eval
qr/update endpoint: http:\S+ to unhealthy/



=== TEST 6: the leader killed (down ~1 s) under 3,000 setnx on unique keys from 16 threads (timeout 2): every acknowledged write present, none applied twice, writes resume within 5 s
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            assert(c.wait_healthy(20), "cluster not healthy")
            local leader = c.leader()
            ngx.say("leader found: ", leader ~= nil)
            -- the worker's connection on the leader: its in-flight txns
            -- are cut by the kill, the case where a retry could double one
            local cli = c.client_first(leader, { timeout = 2 })
            assert(cli:rmdir("/cl6/"))
            local used = c.used_member()
            local N, next_i, done = 3000, 0, 0
            local acked, twice, failed = {}, {}, 0
            local last_ok, gap, killed_at
            local function writer()
                while next_i < N do
                    next_i = next_i + 1
                    local i = next_i
                    local res, err = cli:setnx("/cl6/" .. i, i)
                    ngx.update_time()
                    local now = ngx.now()
                    if res and res.status == 200 and res.body.succeeded then
                        acked[i] = true
                        done = done + 1
                        if last_ok then gap = math.max(gap or 0, now - last_ok) end
                        last_ok = now
                    elseif res and res.status == 200 then
                        -- written once by this test: "the key exists" means
                        -- the txn was applied before, then sent again
                        twice[#twice + 1] = i
                    else
                        failed = failed + 1
                    end
                end
            end
            local threads = {}
            for k = 1, 16 do threads[k] = ngx.thread.spawn(writer) end
            while done < 300 do ngx.sleep(0.005) end
            ngx.update_time()
            killed_at = ngx.now()
            c.kill_and_restart(leader, 1)
            for k = 1, 16 do ngx.thread.wait(threads[k]) end
            ngx.say("the killed leader was the used member: ", used == leader)
            ngx.say("writes after the kill: ", last_ok > killed_at)
            local res = assert(cli:readdir("/cl6/"))
            local present, bad_version, count = {}, 0, 0
            for _, kv in ipairs(res.body.kvs or {}) do
                local i = tonumber(kv.key:match("(%d+)$"))
                present[i] = true
                count = count + 1
                if tonumber(kv.version) ~= 1 or tostring(kv.value) ~= tostring(i) then
                    bad_version = bad_version + 1
                end
            end
            local lost, n_acked = 0, 0
            for i in pairs(acked) do
                n_acked = n_acked + 1
                if not present[i] then lost = lost + 1 end
            end
            c.note("leader kill: acked " .. n_acked .. ", failed " .. failed .. ", present " .. count)
            ngx.say("acknowledged writes lost: ", lost)
            ngx.say("acknowledged 'already exists' for a key written once: ", #twice)
            ngx.say("keys with a version other than 1: ", bad_version)
            ngx.say("longest gap between writes under 5 s: ", gap ~= nil and gap < 5, c.note("leader kill window: " .. tostring(gap)))
            ngx.say("cluster whole again: ", c.wait_healthy(30))
        }
    }
--- response_body
leader found: true
the killed leader was the used member: true
writes after the kill: true
acknowledged writes lost: 0
acknowledged 'already exists' for a key written once: 0
keys with a version other than 1: 0
longest gap between writes under 5 s: true
cluster whole again: true
--- error_log eval
qr/cluster_test: /



=== TEST 7: the leader killed (down ~1 s) under a watcher reading 10,000 puts: every revision exactly once, in order
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            assert(c.wait_healthy(20), "cluster not healthy")
            local leader = c.leader()
            ngx.say("leader found: ", leader ~= nil)
            -- the watch stream on the leader: the kill breaks it, and it
            -- must resume on another member from the last revision seen
            local cli = c.client_first(leader, { serializer = "raw" })
            local reader = assert(cli:watchdir("/cl7/", { timeout = 10 }))
            local start = tonumber(reader().result.header.revision)
            local used = c.used_member()
            local N = 10000
            local acked, done, stop, next_i = {}, false, false, 0
            ngx.timer.at(0, function()
                local w = c.client({ serializer = "raw", timeout = 2 })
                local function put(key, val)
                    while true do
                        local res = w:set(key, val)
                        if res and res.status == 200 then
                            return tonumber(res.body.header.revision)
                        end
                        ngx.sleep(0.05)
                    end
                end
                local function writer()
                    while next_i < N do
                        next_i = next_i + 1
                        local i = next_i
                        if i == 2000 then c.kill_and_restart(leader, 1) end
                        -- not acked[#acked + 1] = put(...): `#acked` would be
                        -- taken before put() yields to the other writers
                        local rev = put("/cl7/" .. (i % 50), tostring(i))
                        acked[#acked + 1] = rev
                    end
                end
                local ws = {}
                for k = 1, 4 do ws[k] = ngx.thread.spawn(writer) end
                for k = 1, 4 do ngx.thread.wait(ws[k]) end
                done = true
                -- keeps events coming until the reader has seen the last
                -- acknowledged put (its read never waits for nothing)
                for _ = 1, 600 do
                    if stop then break end
                    put("/cl7/tick", "t")
                    ngx.sleep(0.05)
                end
            end)
            local seen, dups, gaps, last, err = {}, 0, 0, start, nil
            local top = function()
                local m = 0
                for _, r in ipairs(acked) do m = math.max(m, r) end
                return m
            end
            while true do
                local chunk
                chunk, err = reader()
                if not chunk then break end
                for _, ev in ipairs(chunk.result.events or {}) do
                    local rev = tonumber(ev.kv.mod_revision)
                    if seen[rev] then dups = dups + 1 end
                    if rev ~= last + 1 then gaps = gaps + 1 end
                    seen[rev] = true
                    last = rev
                end
                if done and last >= top() then break end
            end
            stop = true
            local missing = 0
            for _, rev in ipairs(acked) do
                if not seen[rev] then missing = missing + 1 end
            end
            -- any reader error, also one after the writers were done
            ngx.say("reader error: ", tostring(err))
            ngx.say("the killed leader held the watch: ", used == leader)
            ngx.say("acknowledged puts: ", #acked)
            ngx.say("acknowledged but not seen: ", missing)
            ngx.say("duplicates: ", dups, ", out of order or gaps: ", gaps)
            ngx.say("cluster whole again: ", c.wait_healthy(30))
        }
    }
--- response_body
leader found: true
reader error: nil
the killed leader held the watch: true
acknowledged puts: 10000
acknowledged but not seen: 0
duplicates: 0, out of order or gaps: 0
cluster whole again: true
--- timeout: 180



=== TEST 8: the used member (not the leader) killed (down ~1 s) under 16 threads of gets (timeout 2): reads fail for at most 3 s
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            assert(c.wait_healthy(20), "cluster not healthy")
            local leader = c.leader()
            local victim = leader % 3 + 1
            local cli = c.client_first(victim, { timeout = 2 })
            assert(cli:set("/cl8/k", "v"))
            ngx.say("used member is not the leader: ", c.used_member() == victim and victim ~= leader)
            local stop, t0, first_fail, last_fail, fails = false, nil, nil, nil, 0
            local threads = {}
            for k = 1, 16 do
                threads[k] = ngx.thread.spawn(function()
                    while not stop do
                        local res = cli:get("/cl8/k")
                        ngx.update_time()
                        if not res and t0 then
                            fails = fails + 1
                            first_fail = first_fail or ngx.now()
                            last_fail = ngx.now()
                        end
                        ngx.sleep(0.01)
                    end
                end)
            end
            ngx.sleep(0.3)
            ngx.update_time()
            t0 = ngx.now()
            c.kill_and_restart(victim, 1)
            ngx.sleep(3)
            stop = true
            for k = 1, 16 do ngx.thread.wait(threads[k]) end
            local window = last_fail and (last_fail - t0) or 0
            c.note("kill: failed gets " .. fails)
            ngx.say("reads failing for at most 3 s: ", window <= 3, c.note("kill window: " .. window))
            ngx.say("moved off the killed member: ", c.used_member() ~= victim)
            ngx.say("cluster whole again: ", c.wait_healthy(30))
        }
    }
--- response_body
used member is not the leader: true
reads failing for at most 3 s: true
moved off the killed member: true
cluster whole again: true
--- error_log eval
qr/cluster_test: /



=== TEST 9: a write whose answer is lost after etcd received it is not sent again, with or without retry = true: applied once
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            local etcd = require "etcd_grpc"
            local health_check = require "etcd_grpc.health_check"
            assert(c.wait_healthy(20), "cluster not healthy")
            local direct = c.client_first(2, { timeout = 3 })
            assert(direct:rmdir("/cl9/"))
            -- the proxy in front of member 1 lets the set through to etcd
            -- and resets the connection before its answer comes back: the
            -- next member would apply it a second time
            local function lost_answer(name, proxy, url)
                local cli = assert(etcd.new({
                    http_host = { url, c.member(2).host, c.member(3).host },
                    init_count = 0, timeout = 3,
                }))
                local key = "/cl9/" .. name
                ngx.say(name, ": served through the proxy: ", cli:get(key) ~= nil)
                proxy.arm()
                local res, err = cli:set(key, string.rep("v", 4096))
                c.note(name .. ": " .. tostring(err))
                ngx.say(name, ": the set fails: ", res == nil and err ~= nil)
                ngx.say(name, ": the proxy cut its answer: ", proxy.was_cut())
                -- committed by now on a quiet machine; allow for a slow one,
                -- then give a second application time to show
                local kv
                for _ = 1, 50 do
                    local got = direct:get(key)
                    kv = got and got.body.kvs and got.body.kvs[1]
                    if kv then break end
                    ngx.sleep(0.1)
                end
                ngx.sleep(1)
                local got = assert(direct:get(key))
                kv = got.body.kvs and got.body.kvs[1]
                ngx.say(name, ": applied times: ", kv and kv.version or 0)
                res, err = cli:get(key)
                ngx.say(name, ": the next call succeeds: ", res ~= nil, " ", err)
            end
            local function with_proxy(name)
                local url, proxy = c.cut_proxy(1, "$TEST_NGINX_ROOT")
                local ok, err = pcall(lost_answer, name, proxy, url)
                proxy.stop()
                assert(ok, err)
            end
            with_proxy("plain")
            assert(health_check.init({ retry = true, max_fails = 1 }))
            with_proxy("retry")
        }
    }
--- response_body
plain: served through the proxy: true
plain: the set fails: true
plain: the proxy cut its answer: true
plain: applied times: 1
plain: the next call succeeds: true nil
retry: served through the proxy: true
retry: the set fails: true
retry: the proxy cut its answer: true
retry: applied times: 1
retry: the next call succeeds: true nil
--- no_error_log
[error]
Retrying



=== TEST 10: the member a watch is on frozen: the watch moves with the connection (a get times out on it) and gets the puts made meanwhile within 6 s, each once
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            assert(c.wait_healthy(20), "cluster not healthy")
            local leader = c.leader()
            local f = leader % 3 + 1    -- a follower: writes go on meanwhile
            local cli = c.client_first(f, { timeout = 2, serializer = "raw" })
            local writer = c.client_first(leader, { timeout = 2, serializer = "raw" })
            local cleared = assert(writer:rmdir("/cl10/"))
            -- from after the rmdir: a follower that has not applied it yet
            -- would otherwise deliver its DELETEs inside this watch
            local from = tonumber(cleared.body.header.revision) + 1
            local reader = assert(cli:watchdir("/cl10/", { timeout = 10, start_revision = from }))
            reader()    -- created
            assert(cli:get("/cl10/x"))
            ngx.say("watch and calls on the follower: ", c.connections(f) == 2)
            local stop = false
            local getter = ngx.thread.spawn(function()
                while not stop do
                    cli:get("/cl10/x")
                    ngx.sleep(0.1)
                end
            end)
            local N, revs, seen, dups, took = 20, {}, {}, 0, nil
            c.frozen({ f }, 30, function()
                ngx.update_time()
                local t0 = ngx.now()
                for i = 1, N do
                    local res = assert(writer:set("/cl10/" .. i, tostring(i)))
                    revs[i] = tonumber(res.body.header.revision)
                end
                local got = 0
                while got < N do
                    local chunk, err = reader()
                    if not chunk then
                        ngx.say("reader: ", err)
                        break
                    end
                    for _, ev in ipairs(chunk.result.events or {}) do
                        local rev = tonumber(ev.kv.mod_revision)
                        if seen[rev] then dups = dups + 1 end
                        seen[rev] = true
                        got = got + 1
                    end
                end
                ngx.update_time()
                took = ngx.now() - t0
            end)
            stop = true
            ngx.thread.wait(getter)
            local missing = 0
            for i = 1, N do
                if not seen[revs[i]] then missing = missing + 1 end
            end
            ngx.say("puts missed: ", missing, ", duplicates: ", dups)
            ngx.say("seen within 6 s: ", took ~= nil and took < 6, c.note("watch moved: " .. tostring(took)))
            ngx.say("cluster whole again: ", c.wait_healthy(30))
        }
    }
--- response_body
watch and calls on the follower: true
puts missed: 0, duplicates: 0
seen within 6 s: true
cluster whole again: true
--- error_log eval
qr/cluster_test: /
