# Worker exit: a call still in flight when nginx reloads ends promptly, the
# dispatcher and the runtime stop, and the old worker exits within a second.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(1);
run_tests();

__DATA__

=== TEST 1: reload with a call pending on a frozen etcd: the old worker exits within 2 s
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            assert(cli:set("/ex1/k", "v"))

            require("etcd_grpc_test").stop($TEST_NGINX_ETCD_PID)
            -- a call owned by a timer, so it outlives this request
            ngx.timer.at(0, function()
                local res, err = cli:get("/ex1/k", { timeout = 30 })
                ngx.log(ngx.INFO, "pending call ended: ", tostring(res), " ", err)
            end)
            ngx.sleep(0.1)
            local s = etcd.stats()
            ngx.say("pending before reload: ", s.pending)

            -- outside observer: time from HUP to the old worker's exit,
            -- written into the error log; thaws etcd afterwards
            local log = ngx.config.prefix() .. "logs/error.log"
            local pid = ngx.worker.pid()
            os.execute(string.format([[
                ( t0=$(date +%%s%%N); n=0
                  while kill -0 %d 2>/dev/null && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done
                  t1=$(date +%%s%%N)
                  echo "old worker exit took $(( (t1 - t0) / 1000000 )) ms" >> %s
                  kill -CONT %s ) >/dev/null 2>&1 &
                kill -HUP %d ]], pid, log, "$TEST_NGINX_ETCD_PID",
                require("ngx.process").get_master_pid()))
        }
    }
--- response_body
pending before reload: 1
--- wait: 3
--- timeout: 15
--- error_log eval
[
    qr/pending call ended: nil closed/,
    qr/etcd_grpc: worker exiting, runtime shut down/,
    qr/old worker exit took (1?\d{1,3}) ms/,
]
--- no_error_log
[error]



=== TEST 2: a waiter killed while its call is pending does not keep the worker alive after a reload
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local etcd = require "etcd_grpc"
            local cli = t.client({ serializer = "raw" })
            local reader = assert(cli:watch("/ex2/k", { timeout = 60 }))
            assert(reader())   -- the created ack; the next read waits
            local th = ngx.thread.spawn(function() return reader() end)
            ngx.sleep(0.1)
            assert(ngx.thread.kill(th))
            local s = etcd.stats()
            ngx.say("in flight after the kill: ", s.in_flight, ", waiting: ", s.pending)
            t.reload_and_time_exit(0)
        }
    }
--- response_body
in flight after the kill: 1, waiting: 1
--- wait: 3
--- timeout: 15
--- error_log eval
[
    qr/etcd_grpc: worker exiting, runtime shut down/,
    qr/old worker exit took (1?\d{1,3}) ms/,
]
--- no_error_log
[error]
old worker still alive



=== TEST 3: ngx.exit while a spawned thread waits on a call: the worker still exits after a reload
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            local reader = assert(cli:watch("/ex3/k", { timeout = 60 }))
            assert(reader())
            ngx.thread.spawn(function() return reader() end)
            ngx.sleep(0.05)
            ngx.say("in flight before ngx.exit: ", require("etcd_grpc").stats().in_flight)
            t.reload_and_time_exit(0.3)
            ngx.exit(ngx.HTTP_OK)   -- kills the spawned thread
        }
    }
--- response_body
in flight before ngx.exit: 1
--- wait: 3
--- timeout: 15
--- error_log eval
[
    qr/etcd_grpc: worker exiting, runtime shut down/,
    qr/old worker exit took (1?\d{1,3}) ms/,
]
--- no_error_log
[error]
old worker still alive



=== TEST 4: a client that disconnects mid-call (lua_check_client_abort on): the worker still exits after a reload
--- config
    lua_check_client_abort on;
    location = /slow {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            local reader = assert(cli:watch("/ex4/k", { timeout = 60 }))
            assert(reader())
            ngx.log(ngx.INFO, "slow request waits")
            reader()   -- aborted with the request when its client goes
        }
    }
    location = /t {
        content_by_lua_block {
            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", ngx.var.server_port))
            assert(sock:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
            ngx.sleep(0.3)
            sock:close()
            ngx.sleep(0.2)
            ngx.say("in flight after the disconnect: ", require("etcd_grpc").stats().in_flight)
            require("etcd_grpc_test").reload_and_time_exit(0)
        }
    }
--- response_body
in flight after the disconnect: 1
--- wait: 3
--- timeout: 15
--- error_log eval
[
    qr/slow request waits/,
    qr/etcd_grpc: worker exiting, runtime shut down/,
    qr/old worker exit took (1?\d{1,3}) ms/,
]
--- no_error_log
[error]
old worker still alive
