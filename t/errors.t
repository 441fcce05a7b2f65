# Failures: etcd's refusals come back inside res.body with the gateway's
# status; transport failures are nil, err with stable strings.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: a request above etcd's limit is refused with the gateway's statuses
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            -- between --max-request-bytes (1.5 MiB) and the gRPC limit (2 MiB)
            local res, err = cli:set("/er1", string.rep("x", 1700 * 1024))
            ngx.say(res and (res.status .. " " .. res.body.code .. " " .. res.body.error) or err)
            -- above the server's gRPC receive limit
            res, err = cli:set("/er1", string.rep("x", 3 * 1024 * 1024))
            ngx.say(res and (res.status .. " " .. res.body.code .. " " .. res.body.error:gsub("%(.*", "(...)")) or err)
        }
    }
--- response_body
400 3 etcdserver: request is too large
429 8 grpc: received message larger than max (...)



=== TEST 2: a configured receive limit reads like grpc-go's, not like the client library's
--- config
    location = /t {
        content_by_lua_block {
            local small = require("etcd_grpc_test").client({ serializer = "raw", max_recv_msg_size = 1024 })
            assert(small:set("/er2", string.rep("y", 4096)))
            local res, err = small:get("/er2")
            ngx.say(res.status, " ", res.body.code, " ", (res.body.error:gsub("%d+ vs%. 1024", "N vs. 1024")))
            local big = require("etcd_grpc_test").client({ serializer = "raw" })
            ngx.say("unlimited by default: ", #big:get("/er2").body.kvs[1].value)
        }
    }
--- response_body
429 8 grpc: received message larger than max (N vs. 1024)
unlimited by default: 4096



=== TEST 3: transport failures: refused, timeout, stable strings
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "http://127.0.0.1:1", timeout = 1 }))
            ngx.say("refused: ", select(2, cli:get("/er3")))
            ngx.say("refused (txn): ", select(2, cli:setnx("/er3", "v")))
            local cli2 = require("etcd_grpc_test").client()
            require("etcd_grpc_test").stop($TEST_NGINX_ETCD_PID)
            local res, err = cli2:readdir("/er3", { timeout = 0.3 })
            os.execute("kill -CONT $TEST_NGINX_ETCD_PID")
            ngx.say("frozen: ", tostring(res), " ", err)
        }
    }
--- response_body
refused: http://127.0.0.1:1: connection refused
refused (txn): http://127.0.0.1:1: connection refused
frozen: nil timeout
