# HUP mode: nginx reloads between blocks instead of restarting; every new
# generation of workers builds its own runtime and keeps working.
BEGIN { $ENV{TEST_NGINX_USE_HUP} = 1 }

use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(2);
# A reload sequence: TEST 2 reads, in the next generation of workers, the key
# TEST 1 wrote before the HUP.
no_shuffle();
run_tests();

__DATA__

=== TEST 1: set before a reload
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            local res, err = cli:set("/rl/k", "before reload")
            ngx.say(res and res.status or err)
        }
    }
--- response_body
200



=== TEST 2: after the reload, new workers read it with a runtime of their own
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            local res, err = cli:get("/rl/k")
            ngx.say(res and res.body.kvs[1].value or err)
            local s = etcd.stats()
            ngx.say("runtime pid is worker pid: ", s.pid == ngx.worker.pid(),
                    ", runtimes created: ", s.runtimes_created)
        }
    }
--- response_body
before reload
runtime pid is worker pid: true, runtimes created: 1



=== TEST 3: a third generation with a different config still works, also from a timer
--- http_config
    lua_shared_dict rl3 1m;
--- config
    location = /t {
        content_by_lua_block {
            ngx.timer.at(0, function()
                local etcd = require "etcd_grpc"
                local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
                local res, err = cli:set("/rl/k3", "third")
                if res then res, err = cli:get("/rl/k3") end
                ngx.shared.rl3:set("r", res and res.body.kvs[1].value or tostring(err))
            end)
            for _ = 1, 100 do
                if ngx.shared.rl3:get("r") then break end
                ngx.sleep(0.02)
            end
            ngx.say(ngx.shared.rl3:get("r"))
        }
    }
--- response_body
third
