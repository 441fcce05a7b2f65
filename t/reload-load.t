# Reloads under load: nginx reloads every second for 30 s while 4 clients
# loop on gets and 100 watchers per worker are live; no request fails, no
# worker dies on a signal, every old worker is gone within 2 s of its last
# request (all checked from outside by t/lib/reload_load.py).
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(2);
# debug logging of 30 s of requests and reloads would dominate the run
log_level('warn');
run_tests();

__DATA__

=== TEST 1: a reload every second for 30 s under gets and 100 live watchers per worker
--- http_config
    init_worker_by_lua_block {
        -- 100 watchers per worker, each read in a loop by a light thread
        -- of one timer, as a config sync would
        ngx.timer.at(0, function()
            local cli = require("etcd_grpc_test").client({ serializer = "raw", timeout = 3600 })
            local threads = {}
            for i = 1, 100 do
                threads[i] = ngx.thread.spawn(function()
                    local reader = cli:watch("/rll/w" .. i)
                    while reader and not ngx.worker.exiting() do
                        local chunk, err = reader()
                        if not chunk then
                            if not ngx.worker.exiting() then
                                ngx.log(ngx.WARN, "watcher ", i, " ended: ", err)
                            end
                            return
                        end
                    end
                end)
            end
            for i = 1, 100 do ngx.thread.wait(threads[i]) end
        end)
    }
--- config
    location = /get {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local res, err = cli:get("/rll/k")
            if not res or res.status ~= 200 then
                ngx.status = 500
                ngx.say("failed to get: ", err)
                return
            end
            ngx.say("ok ", ngx.worker.pid(), " ", res.body.kvs and res.body.kvs[1].value)
        }
    }
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            assert(cli:set("/rll/k", "v"))
            os.execute(string.format("python3 $TEST_NGINX_ROOT/t/lib/reload_load.py %d %d %s 30 >/dev/null 2>&1 &",
                ngx.var.server_port,
                require("ngx.process").get_master_pid(), ngx.config.prefix() .. "logs/error.log"))
            ngx.say("started")
        }
    }
--- response_body
started
--- wait: 38
--- timeout: 60
--- error_log eval
qr/reload under load: (?:2[89]|3\d) reloads, [1-9]\d+ requests, 0 failed, (?:[5-9]\d) old workers, 0 lingered/
--- no_error_log
exited on signal
reload under load: failure
[alert]
[error]
