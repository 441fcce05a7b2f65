# Calls from every kind of nginx phase: timers (async), init_worker and
# log (blocking), init_by_lua in the master (throwaway runtime), and two
# workers each with a runtime of their own.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(2);
run_tests();

__DATA__

=== TEST 1: a call from a timer (async path)
--- http_config
    lua_shared_dict ph1 1m;
--- config
    location = /t {
        content_by_lua_block {
            local dict = ngx.shared.ph1
            local ok, err = ngx.timer.at(0, function()
                local etcd = require "etcd_grpc"
                local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
                local res, err = cli:set("/ph1/k", "from timer")
                if res then
                    res, err = cli:get("/ph1/k")
                end
                dict:set("result", res and res.body.kvs[1].value or ("failed: " .. tostring(err)))
            end)
            if not ok then
                ngx.say("failed to create timer: ", err)
                return
            end
            for _ = 1, 100 do
                if dict:get("result") then break end
                ngx.sleep(0.02)
            end
            ngx.say(dict:get("result"))
        }
    }
--- response_body
from timer



=== TEST 2: a call from init_worker (blocking path) in each worker
--- http_config
    lua_shared_dict ph2 1m;
    init_worker_by_lua_block {
        local etcd = require "etcd_grpc"
        local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
        local key = "/ph2/w" .. ngx.worker.id()
        local res, err = cli:set(key, "worker " .. ngx.worker.id())
        if res then
            res, err = cli:get(key)
        end
        ngx.shared.ph2:set(key, res and res.body.kvs[1].value or ("failed: " .. tostring(err)))
    }
--- config
    location = /t {
        content_by_lua_block {
            local dict = ngx.shared.ph2
            -- the other worker may still be in its init_worker call
            for _ = 1, 100 do
                if dict:get("/ph2/w0") and dict:get("/ph2/w1") then break end
                ngx.sleep(0.02)
            end
            ngx.say(dict:get("/ph2/w0"))
            ngx.say(dict:get("/ph2/w1"))
        }
    }
--- response_body
worker 0
worker 1



=== TEST 3: two workers each run their own runtime, created in the worker itself
--- http_config
    lua_shared_dict ph3 1m;
    init_worker_by_lua_block {
        ngx.timer.at(0, function()
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            local res, err = cli:get("/ph3")
            local s = etcd.stats()
            ngx.shared.ph3:set("w" .. ngx.worker.id(),
                               string.format("%s %d %d %d", res and "ok" or err,
                                             s.pid, ngx.worker.pid(), s.runtimes_created))
        end)
    }
--- config
    location = /t {
        content_by_lua_block {
            local dict = ngx.shared.ph3
            for _ = 1, 100 do
                if dict:get("w0") and dict:get("w1") then break end
                ngx.sleep(0.02)
            end
            local pids = {}
            for id = 0, 1 do
                local v = dict:get("w" .. id) or "missing"
                local ok, rt_pid, worker_pid, created = v:match("^(%S+) (%d+) (%d+) (%d+)$")
                ngx.say("worker ", id, ": ", ok, ", runtime pid is worker pid: ",
                        rt_pid == worker_pid, ", runtimes created: ", created)
                pids[id] = rt_pid
            end
            ngx.say("different runtimes: ", pids[0] ~= nil and pids[0] ~= pids[1])
        }
    }
--- response_body
worker 0: ok, runtime pid is worker pid: true, runtimes created: 1
worker 1: ok, runtime pid is worker pid: true, runtimes created: 1
different runtimes: true



=== TEST 4: a call in init_by_lua (master) leaves no thread and no socket behind; workers still work
--- http_config
    init_by_lua_block {
        local t = require "etcd_grpc_test"
        local etcd = require "etcd_grpc"
        local pid = t.pid()
        local threads0, sockets0 = t.threads(), t.sockets(pid)
        local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
        local res, err = cli:set("/ph4/k", "set in init")
        if res then
            res, err = cli:get("/ph4/k")
        end
        package.loaded.ph4 = {
            value = res and res.body.kvs[1].value or ("failed: " .. tostring(err)),
            threads = threads0 .. " -> " .. t.threads(),
            sockets = sockets0 .. " -> " .. t.sockets(pid),
            client = cli,
        }
    }
--- config
    location = /t {
        content_by_lua_block {
            local r = package.loaded.ph4
            ngx.say("in init: ", r.value)
            local t1, t2 = r.threads:match("(%d+) %-> (%d+)")
            local s1, s2 = r.sockets:match("(%d+) %-> (%d+)")
            ngx.say("threads unchanged: ", t1 == t2, ", sockets unchanged: ", s1 == s2)
            -- the client made in the master works in the forked worker
            local res, err = r.client:get("/ph4/k")
            ngx.say("in worker: ", res and res.body.kvs[1].value or err)
            ngx.say("runtime belongs to this worker: ",
                    require("etcd_grpc").stats().pid == ngx.worker.pid())
        }
    }
--- response_body
in init: set in init
threads unchanged: true, sockets unchanged: true
in worker: set in init
runtime belongs to this worker: true



=== TEST 5: a call from the log phase (blocking path)
--- http_config
    lua_shared_dict ph5 1m;
--- config
    location = /logged {
        content_by_lua_block { ngx.say("logged") }
        log_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            local res, err = cli:set("/ph5/k", "from log", { timeout = 1 })
            if res then
                res, err = cli:get("/ph5/k", { timeout = 1 })
            end
            ngx.shared.ph5:set("r", res and res.body.kvs[1].value or ("failed: " .. tostring(err)))
        }
    }
    location = /t {
        content_by_lua_block {
            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", $TEST_NGINX_SERVER_PORT))
            sock:send("GET /logged HTTP/1.0\r\nHost: localhost\r\n\r\n")
            sock:receive("*a")
            sock:close()
            local dict = ngx.shared.ph5
            for _ = 1, 100 do
                if dict:get("r") then break end
                ngx.sleep(0.02)
            end
            ngx.say(dict:get("r"))
        }
    }
--- response_body
from log



=== TEST 6: plain luajit outside nginx: calls block, and time out against a frozen etcd
--- config
    location = /t {
        content_by_lua_block {
            local root = "$TEST_NGINX_ROOT"
            local cmd = "LUA_PATH='" .. root .. "/lua/?.lua;;' LUA_CPATH='"
                        .. "$TEST_NGINX_ETCD_GRPC_CPATH;;' luajit "
                        .. root .. "/t/lib/plain_luajit.lua $TEST_NGINX_ETCD_HOST "
            local function run(mode)
                local f = io.popen(cmd .. mode .. " 2>&1")
                local out = f:read("*a")
                f:close()
                return out
            end
            ngx.print("roundtrip: ", run("roundtrip"))
            require("etcd_grpc_test").stop($TEST_NGINX_ETCD_PID)
            local out = run("timeout")
            os.execute("kill -CONT $TEST_NGINX_ETCD_PID")
            ngx.print("frozen: ", out)
        }
    }
--- response_body
roundtrip: from luajit
frozen: nil timeout true
--- timeout: 15
