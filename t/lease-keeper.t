# Background lease keepers: cli:lease_keeper(id) renews over the worker's
# one LeaseKeepAlive stream; state() alive/lost/canceled, wait(), cancel(),
# GC; over etcd restarts; at scale.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => join('', map { "env $_;\n" }
        qw(TEST_NGINX_ETCDCTL TEST_NGINX_ETCD_RESTART)) . ($block->main_config // ''));
    $block->set_value(timeout => 60) unless defined $block->timeout;
});

workers(1);
run_tests();

__DATA__

=== TEST 1: a keeper holds a 2 s lease for 10 s across an etcd restart
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            local id = assert(cli:grant(2)).body.ID
            assert(cli:set("/lk1/k", "v", { lease = id }))
            local k, err = cli:lease_keeper(id)
            if not k then
                ngx.say("failed to keep: ", err)
                return
            end
            ngx.say("keeper: ", k:state(), ", id: ", k.id == id)
            ngx.sleep(3)
            -- killed and started again, down for 1 s, while the keeper runs
            os.execute(os.getenv("TEST_NGINX_ETCD_RESTART") .. " 1 >/dev/null 2>&1")
            ngx.sleep(7)
            ngx.say("after 10 s and a restart: ", k:state())
            local res
            for _ = 1, 50 do
                res = cli:get("/lk1/k")
                if res then break end
                ngx.sleep(0.1)
            end
            ngx.say("key: ", res and res.body.kvs and res.body.kvs[1].value)
            local s = require("etcd_grpc").stats()
            ngx.say("keepers: ", s.lease_keepers, ", streams: ", s.lease_streams)
            k:cancel()
        }
    }
--- response_body
keeper: alive, id: true
after 10 s and a restart: alive
key: v
keepers: 1, streams: 1



=== TEST 2: a lease revoked with etcdctl: the keeper reports lost within 1 s
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            -- etcdctl takes lease IDs in hex: 0x2222 = 8738
            assert(cli:grant(2, 8738))
            local k = assert(cli:lease_keeper("8738"))
            ngx.say("alive: ", k:wait(1.5))
            -- etcdctl runs in the background and stamps the moment etcd
            -- answered its revoke; the keeper's state is timed from there
            local stamp = ngx.config.prefix() .. "/revoked.at"
            os.execute("(" .. os.getenv("TEST_NGINX_ETCDCTL") .. " --endpoints="
                       .. os.getenv("TEST_NGINX_ETCD_HOST") .. " lease revoke 2222 >/dev/null"
                       .. " && date +%s.%N > " .. stamp .. ") &")
            local state = k:wait(5)
            ngx.update_time()
            local lost_at = ngx.now()
            ngx.sleep(0.3)
            local f = io.open(stamp)
            local revoked_at = f and tonumber(f:read("*a"))
            if f then f:close() end
            ngx.log(ngx.INFO, "lost ", lost_at - (revoked_at or 0), " s after the revoke")
            ngx.say("then: ", state, ", within 1 s: ", revoked_at ~= nil and lost_at - revoked_at < 1)
            ngx.say("wait again: ", k:wait(1), ", keepers: ", require("etcd_grpc").stats().lease_keepers)
        }
    }
--- response_body
alive: alive
then: lost, within 1 s: true
wait again: lost, keepers: 0



=== TEST 3: cancel stops the keeper; the lease then expires with its key
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            local id = assert(cli:grant(2)).body.ID
            assert(cli:set("/lk3/k", "v", { lease = id }))
            local k = assert(cli:lease_keeper(id))
            ngx.sleep(3)
            ngx.say("kept 3 s: ", k:state(), ", key: ", assert(cli:get("/lk3/k")).body.kvs ~= nil)
            ngx.say("cancel: ", k:cancel(), ", state: ", k:state(), ", wait: ", k:wait(1))
            ngx.sleep(3)
            ngx.say("3 s later, key: ", tostring(assert(cli:get("/lk3/k")).body.kvs),
                    ", TTL: ", assert(cli:timetolive(id)).body.TTL)
        }
    }
--- response_body
kept 3 s: alive, key: true
cancel: true, state: canceled, wait: canceled
3 s later, key: nil, TTL: -1



=== TEST 4: a garbage-collected keeper cancels itself (its stream stays up for another keeper)
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            local id = assert(cli:grant(2)).body.ID
            local other_id = assert(cli:grant(2)).body.ID
            local other = assert(cli:lease_keeper(other_id))
            do
                local k = assert(cli:lease_keeper(id))
                ngx.sleep(0.2)
                ngx.say("keepers: ", require("etcd_grpc").stats().lease_keepers)
            end
            collectgarbage()
            collectgarbage()
            ngx.sleep(0.2)
            ngx.say("after GC: ", require("etcd_grpc").stats().lease_keepers)
            ngx.sleep(3)
            ngx.say("collected one's TTL: ", assert(cli:timetolive(id)).body.TTL)
            ngx.say("other: ", other:state(), ", TTL > 0: ",
                    tonumber(assert(cli:timetolive(other_id)).body.TTL) > 0)
            other:cancel()
        }
    }
--- response_body
keepers: 2
after GC: 1
collected one's TTL: -1
other: alive, TTL > 0: true



=== TEST 5: an unknown lease is lost at once; wait times out alive; argument errors
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            ngx.say("no id: ", select(2, cli:lease_keeper()))
            ngx.say("bad id: ", select(2, cli:lease_keeper("x1")))
            local k = assert(cli:lease_keeper(555555))
            ngx.say("unknown: ", k:wait(3))
            local id = assert(cli:grant(60)).body.ID
            local live = assert(cli:lease_keeper(id))
            ngx.update_time()
            local t0 = ngx.now()
            ngx.say("wait 0.5: ", live:wait(0.5))
            ngx.update_time()
            ngx.say("waited about 0.5 s: ", ngx.now() - t0 >= 0.45 and ngx.now() - t0 < 1.5)
            ngx.say("bad timeout: ", select(2, pcall(live.wait, live, -1)))
            live:cancel()
            assert(cli:revoke(id))
        }
    }
--- response_body_like
no id: lease keeper needs ID argument
bad id: ID must be integer
unknown: lost
wait 0.5: alive
waited about 0.5 s: true
bad timeout: .*timeout must be a positive number



=== TEST 6: keepers started in init_worker (not yieldable) and in a timer keep their leases
--- http_config
    init_worker_by_lua_block {
        local cli = require("etcd_grpc_test").client()
        -- blocking calls here: init_worker cannot yield
        local res = assert(cli:grant(2))
        package.loaded.lk6 = { id = res.body.ID, k = assert(cli:lease_keeper(res.body.ID)) }
        ngx.timer.at(0, function()
            local id = assert(cli:grant(2)).body.ID
            package.loaded.lk6.tid = id
            package.loaded.lk6.tk = assert(cli:lease_keeper(id))
        end)
    }
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            local s = package.loaded.lk6
            ngx.sleep(4)
            ngx.say("init_worker keeper: ", s.k:state(), ", TTL > 0: ",
                    tonumber(assert(cli:timetolive(s.id)).body.TTL) > 0)
            ngx.say("timer keeper: ", s.tk:state(), ", TTL > 0: ",
                    tonumber(assert(cli:timetolive(s.tid)).body.TTL) > 0)
            s.k:cancel()
            s.tk:cancel()
        }
    }
--- response_body
init_worker keeper: alive, TTL > 0: true
timer keeper: alive, TTL > 0: true



=== TEST 7: 1,000 keepers: at most 2 connections, one LeaseKeepAlive stream, idle CPU under 1% of a core
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client()
            local keepers, ids = {}, {}
            for i = 1, 1000 do
                ids[i] = assert(cli:grant(30)).body.ID
                keepers[i] = assert(cli:lease_keeper(ids[i]))
            end
            ngx.sleep(1)
            local s = require("etcd_grpc").stats()
            ngx.say("keepers: ", s.lease_keepers, ", streams: ", s.lease_streams,
                    ", connections: ", t.established(ngx.worker.pid(), $TEST_NGINX_ETCD_PORT) <= 2)
            local function cpu_ms()
                local f = io.open("/proc/self/stat")
                local st = f:read("*a")
                f:close()
                local ut, sy = st:match("^%d+ %b() %S+ " .. ("%S+ "):rep(10) .. "(%d+) (%d+)")
                return (tonumber(ut) + tonumber(sy)) * 10
            end
            local r0, c0 = s.lease_renewals, cpu_ms()
            ngx.sleep(10)
            local used = cpu_ms() - c0
            local sent = require("etcd_grpc").stats().lease_renewals - r0
            -- 1% of a core over 10 s is 100 ms
            ngx.say("idle CPU over 10 s under 100 ms: ", used < 100)
            ngx.log(ngx.INFO, "1000 keepers (TTL 30): ", used, " ms CPU over 10 s, ", sent, " renewals")
            local alive = 0
            for i = 1, 1000 do
                if keepers[i]:state() == "alive" then alive = alive + 1 end
            end
            ngx.say("alive: ", alive, ", renewed in 10 s: ", sent >= 900 and sent <= 1200)
            for i = 1, 1000 do
                keepers[i]:cancel()
                cli:revoke(ids[i])
            end
        }
    }
--- response_body
keepers: 1000, streams: 1, connections: true
idle CPU over 10 s under 100 ms: true
alive: 1000, renewed in 10 s: true
--- timeout: 90
--- error_log eval
qr/1000 keepers \(TTL 30\): \d+ ms CPU over 10 s, \d+ renewals/



=== TEST 8: lease_keeper in init_by_lua (the master) is refused, workers keep leases
--- http_config
    init_by_lua_block {
        local cli = require("etcd_grpc_test").client()
        local k, err = cli:lease_keeper(88888)
        package.loaded.lk8 = { k = k, err = err }
    }
--- config
    location = /t {
        content_by_lua_block {
            local s = package.loaded.lk8
            ngx.say("in init: ", tostring(s.k), ", ", s.err)
            local cli = require("etcd_grpc_test").client()
            local id = assert(cli:grant(2)).body.ID
            local k = assert(cli:lease_keeper(id))
            ngx.say("in a worker: ", k:wait(3))
            k:cancel()
        }
    }
--- response_body
in init: nil, lease keepers are not available in the init phase
in a worker: alive



=== TEST 9: etcd restarted from an empty store: the lease is unknown after the reconnect, the keeper reports lost
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            local id = assert(cli:grant(30)).body.ID
            local k = assert(cli:lease_keeper(id))
            ngx.say("before: ", k:wait(1))
            os.execute(os.getenv("TEST_NGINX_ETCD_RESTART") .. " 0.5 wipe >/dev/null 2>&1")
            ngx.say("after the wipe: ", k:wait(10))
            ngx.say("keepers: ", require("etcd_grpc").stats().lease_keepers)
        }
    }
--- response_body
before: alive
after the wipe: lost
keepers: 0
