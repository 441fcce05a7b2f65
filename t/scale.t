# Beyond the gateway's limits: responses far above 4 MiB and far more than
# 250 concurrent calls, all over the worker's single CRUD connection.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(1);
run_tests();

__DATA__

=== TEST 1: 1,000 concurrent gets from light threads in one worker, one TCP connection
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            assert(cli:set("/sc1/k", "v"))
            local threads = {}
            for i = 1, 1000 do
                threads[i] = ngx.thread.spawn(function()
                    local res, err = cli:get("/sc1/k", { timeout = 30 })
                    return res and res.body.kvs[1].value == "v" or err
                end)
            end
            local ok, errs = 0, {}
            for i = 1, 1000 do
                local _, r = ngx.thread.wait(threads[i])
                if r == true then ok = ok + 1 else errs[tostring(r)] = true end
            end
            ngx.say("succeeded: ", ok)
            for e in pairs(errs) do ngx.say("error: ", e) end
            ngx.say("connections: ", require("etcd_grpc_test").established(ngx.worker.pid(),
                                                                          $TEST_NGINX_ETCD_PORT))
        }
    }
--- response_body
succeeded: 1000
connections: 1
--- timeout: 60



=== TEST 2: readdir of 64 values of 1 MiB (64 MiB in one response) comes back intact
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw", timeout = 60 })
            local chunk = string.rep("0123456789abcdef", 65536)     -- 1 MiB
            for i = 1, 64 do
                local v = string.format("%02d", i) .. chunk:sub(3)
                local res, err = cli:set(string.format("/sc2/%02d", i), v)
                if not res or res.status ~= 200 then
                    ngx.say("failed to set: ", err or res.status)
                    return
                end
            end
            local res, err = cli:readdir("/sc2/")
            if not res then
                ngx.say("failed to readdir: ", err)
                return
            end
            local total, intact = 0, 0
            for i, kv in ipairs(res.body.kvs) do
                total = total + #kv.value
                if kv.value == string.format("%02d", i) .. chunk:sub(3) then
                    intact = intact + 1
                end
            end
            ngx.say("status: ", res.status, ", count: ", res.body.count)
            ngx.say("bytes: ", total, ", intact values: ", intact)
        }
    }
--- response_body
status: 200, count: 64
bytes: 67108864, intact values: 64
--- timeout: 120
