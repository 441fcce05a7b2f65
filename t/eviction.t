# Connections that no client uses any more are let go; those in use stay.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: twenty endpoint rewrites leave one connection behind, not twenty-one; a client in use keeps its own
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local t = require "etcd_grpc_test"
            -- test builds: no 60 s grace, so the sweep acts at once
            require("etcd_grpc.native").test_set_idle_keep(0)
            local keep = t.client({ serializer = "raw" })
            assert(keep:set("/ev1/k", "v"))
            local cli = t.client({ serializer = "raw", timeout = 1 })
            local port = os.getenv("TEST_NGINX_ETCD_HOST"):match(":(%d+)$")
            for i = 2, 21 do
                -- nothing listens there: the call fails, the connection is made
                cli.endpoints[1].full_prefix = "http://127.0.0." .. i .. ":" .. port .. "/v3"
                local res, err = cli:get("/ev1/k")
                if res then ngx.say("unexpected answer from 127.0.0.", i) end
                collectgarbage()
                collectgarbage()
            end
            ngx.say("connections right after: ", etcd.stats().connections)
            ngx.sleep(0.5)   -- the sweeper runs every 100 ms here
            ngx.say("connections after a sweep: ", etcd.stats().connections)
            local res, err = keep:get("/ev1/k")
            ngx.say("the client in use: ", res and res.body.kvs[1].value or err)
        }
    }
--- response_body_like
connections right after: \d+
connections after a sweep: 2
the client in use: v
