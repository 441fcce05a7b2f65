# Watchers at scale in one worker: connections stay at two, idle costs
# nothing, the worker keeps answering, reload moves watchers to new workers.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(1);
run_tests();

__DATA__

=== TEST 1: 1, 10 and 200 watchers plus ongoing gets: exactly 2 connections to etcd in each case
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            local readers = {}
            for _, n in ipairs({ 1, 10, 200 }) do
                while #readers < n do
                    local r = assert(cli:watchdir("/ws1/" .. #readers .. "/", { timeout = 5 }))
                    assert(r().result.created)
                    readers[#readers + 1] = r
                end
                for _ = 1, 20 do assert(cli:get("/ws1/x")) end
                ngx.say(n, " watchers: ", t.established(ngx.worker.pid(), $TEST_NGINX_ETCD_PORT),
                        " connections")
            end
            -- and each watcher still gets its own events
            assert(cli:set("/ws1/7/x", "seven"))
            ngx.say("watcher 7 got: ", readers[8]().result.events[1].kv.value)
        }
    }
--- response_body
1 watchers: 2 connections
10 watchers: 2 connections
200 watchers: 2 connections
watcher 7 got: seven



=== TEST 2: 100 idle watchers: a plain location answers fast and the worker burns no CPU
--- config
    location = /ping {
        return 200 "pong\n";
    }
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            local readers = {}
            for i = 1, 100 do
                readers[i] = assert(cli:watchdir("/ws2/" .. i .. "/", { timeout = 60 }))
                assert(readers[i]().result.created)
            end
            -- every watcher has a read pending, as a sync loop in a timer would
            ngx.timer.at(0, function()
                for i = 1, 100 do
                    ngx.thread.spawn(function() readers[i]() end)
                end
            end)
            local function cpu_ms()
                local f = io.open("/proc/self/stat")
                local s = f:read("*a")
                f:close()
                local ut, st = s:match("^%d+ %b() %S+ " .. ("%S+ "):rep(10) .. "(%d+) (%d+)")
                return (tonumber(ut) + tonumber(st)) * 10
            end
            ngx.sleep(0.5)
            local c0 = cpu_ms()
            ngx.update_time()
            local t0 = ngx.now()
            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", $TEST_NGINX_SERVER_PORT))
            sock:send("GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            local body = sock:receive("*a")
            ngx.update_time()
            ngx.say("ping answered: ", body:find("pong", 1, true) ~= nil, ", under 100 ms: ",
                    ngx.now() - t0 < 0.1)
            ngx.sleep(10)
            local used = cpu_ms() - c0
            ngx.say("worker CPU over 10 s idle under 50 ms: ", used < 50)
            ngx.log(ngx.INFO, "idle worker CPU over 10 s with 100 watchers: ", used, " ms")
            -- the watchers still work
            assert(cli:set("/ws2/5/k", "v"))
            ngx.sleep(0.2)
            ngx.say("still live: ", require("etcd_grpc").stats().watchers)
        }
    }
--- response_body
ping answered: true, under 100 ms: true
worker CPU over 10 s idle under 50 ms: true
still live: 100
--- timeout: 40
--- error_log eval
qr/idle worker CPU over 10 s with 100 watchers: \d+ ms/



=== TEST 3: reload with 100 live watchers: the old worker exits within 2 s, the new one watches again
--- http_config
    lua_shared_dict ws3 1m;
    init_worker_by_lua_block {
        -- every worker generation starts 100 watchers from a timer, like a
        -- config-sync loop, and counts the events they see
        ngx.timer.at(0, function()
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            for i = 1, 100 do
                ngx.thread.spawn(function()
                    local r = cli:watchdir("/ws3/" .. i .. "/", { timeout = 60 })
                    while r and not ngx.worker.exiting() do
                        local chunk = r()
                        if not chunk then break end
                        if chunk.result.events then
                            ngx.shared.ws3:incr("events:" .. ngx.worker.pid(), 1, 0)
                        end
                    end
                end)
            end
        end)
    }
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            ngx.sleep(0.5)
            local old = ngx.worker.pid()
            local watchers = require("etcd_grpc").stats().watchers
            ngx.say("watchers before reload: ", watchers)
            -- observer outside nginx: time from HUP to the old worker's exit
            local log = ngx.config.prefix() .. "logs/error.log"
            os.execute(string.format([[
                ( t0=$(date +%%s%%N); n=0
                  while kill -0 %d 2>/dev/null && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done
                  echo "old worker exit took $(( ($(date +%%s%%N) - t0) / 1000000 )) ms" >> %s
                ) >/dev/null 2>&1 &
                kill -HUP %d ]], old, log, require("ngx.process").get_master_pid()))
        }
    }
--- response_body
watchers before reload: 100
--- wait: 3
--- error_log eval
[
    qr/etcd_grpc: worker exiting, runtime shut down/,
    qr/old worker exit took (1?\d?\d?\d) ms/,
]
