# The non-blocking hand-off: a pending etcd call never stalls the worker,
# all calls share one connection, and a panic inside the runtime is an error.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(1);
run_tests();

__DATA__

=== TEST 1: etcd frozen: a pending get does not block the worker, times out, and recovers after SIGCONT
--- config
    location = /ping {
        return 200 "pong\n";
    }
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            assert(cli:set("/nb1/k", "v"))          -- the connection is up

            require("etcd_grpc_test").stop($TEST_NGINX_ETCD_PID)
            local a = ngx.thread.spawn(function()
                ngx.update_time()
                local t0 = ngx.now()
                local res, err = cli:get("/nb1/k", { timeout = 2 })
                ngx.update_time()
                return res, err, ngx.now() - t0
            end)

            -- request B, to a plain location of the same (only) worker
            ngx.update_time()
            local t0 = ngx.now()
            local sock = ngx.socket.tcp()
            sock:settimeout(5000)
            local ok, err = sock:connect("127.0.0.1", $TEST_NGINX_SERVER_PORT)
            local body
            if ok then
                sock:send("GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
                body = sock:receive("*a")
            end
            ngx.update_time()
            local b_elapsed = ngx.now() - t0
            local _, res, aerr, a_elapsed = ngx.thread.wait(a)
            os.execute("kill -CONT $TEST_NGINX_ETCD_PID")

            ngx.say("B answered: ", body and body:find("pong", 1, true) ~= nil)
            ngx.say("B under 100 ms: ", b_elapsed < 0.1)
            ngx.say("A: ", tostring(res), " ", aerr)
            ngx.say("A waited its 2 s timeout: ", a_elapsed >= 1.9 and a_elapsed < 3.5)

            local res2, err2 = cli:get("/nb1/k", { timeout = 5 })
            ngx.say("after SIGCONT: ", res2 and res2.body.kvs[1].value or err2)
        }
    }
--- response_body
B answered: true
B under 100 ms: true
A: nil timeout
A waited its 2 s timeout: true
after SIGCONT: v
--- timeout: 15



=== TEST 2: 500 gets from 100 concurrent light threads share one TCP connection
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            assert(cli:set("/nb2/k", "v"))
            local threads = {}
            for i = 1, 100 do
                threads[i] = ngx.thread.spawn(function()
                    local n = 0
                    for _ = 1, 5 do
                        local res = cli:get("/nb2/k")
                        if res and res.body.kvs[1].value == "v" then n = n + 1 end
                    end
                    return n
                end)
            end
            local total = 0
            for i = 1, 100 do
                local _, n = ngx.thread.wait(threads[i])
                total = total + n
            end
            ngx.say("successful gets: ", total)

            -- a second client object with the same endpoint shares it too
            local other = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            assert(other:get("/nb2/k"))

            local conns = require("etcd_grpc_test").established(ngx.worker.pid(),
                                                                $TEST_NGINX_ETCD_PORT)
            ngx.say("established connections to etcd: ", conns)
        }
    }
--- response_body
successful gets: 500
established connections to etcd: 1



=== TEST 3: a panic inside the runtime comes back as an error and the next call works
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local bridge = require "etcd_grpc.bridge"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            assert(cli:set("/nb3/k", "alive"))
            local res, err = bridge.call(cli._native, "panic", nil, 2)
            ngx.say("async: ", tostring(res), " ", err)
            res = cli:get("/nb3/k")
            ngx.say("next call: ", res.body.kvs[1].value)
            ngx.say("worker pid unchanged: ", etcd.stats().pid == ngx.worker.pid())
        }
    }
--- response_body
async: nil internal error: etcd_grpc test hook: deliberate panic
next call: alive
worker pid unchanged: true



=== TEST 4: a panic on the blocking path (init_worker) is an error too
--- http_config
    init_worker_by_lua_block {
        local etcd = require "etcd_grpc"
        local bridge = require "etcd_grpc.bridge"
        local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
        local res, err = bridge.call(cli._native, "panic", nil, 2)
        local res2, err2 = cli:set("/nb4/k", "after panic")
        package.loaded.nb4 = tostring(res) .. " " .. tostring(err) .. " / "
                             .. tostring(res2 and res2.status or err2)
    }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(package.loaded.nb4)
        }
    }
--- response_body
nil internal error: etcd_grpc test hook: deliberate panic / 200



=== TEST 5: idle: no pending call, the dispatcher waits on its socket
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            assert(cli:get("/nb5"))
            local s = etcd.stats()
            ngx.say("dispatcher: ", s.dispatcher, ", pending: ", s.pending,
                    ", in flight: ", s.in_flight, ", runtimes: ", s.runtimes_created)
        }
    }
--- response_body
dispatcher: running, pending: 0, in flight: 0, runtimes: 1
