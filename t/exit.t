# Worker exit: a call still in flight when nginx reloads ends promptly, the
# dispatcher and the runtime stop, and the old worker exits within a second.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(1);
run_tests();

__DATA__

=== TEST 1: reload with a call pending on a frozen etcd: the old worker exits in under a second
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            assert(cli:set("/ex1/k", "v"))

            os.execute("kill -STOP $TEST_NGINX_ETCD_PID")
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
    qr/old worker exit took ([1-9]?\d?\d) ms/,
]
--- no_error_log
[error]
