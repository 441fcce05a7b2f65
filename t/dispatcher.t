# The dispatcher (the light thread that wakes waiters) when it cannot start:
# calls get a clear error at once, restarts back off, then calls work again.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: doorbells that cannot be made: calls fail at once with the reason, restarts back off, then recover
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local core = require "etcd_grpc.native"
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            core.test_refuse_doorbells(3)
            ngx.update_time()
            local t0 = ngx.now()
            local res, err = cli:get("/dp1/k")
            ngx.update_time()
            ngx.say("first call: ", tostring(res), " ", err, ", at once: ", ngx.now() - t0 < 0.5)
            res, err = cli:get("/dp1/k")
            ngx.say("during backoff: ", tostring(res), " ", err)
            -- restarts after 10, 20 and 40 ms; the third one's doorbell works
            ngx.sleep(0.5)
            res, err = cli:set("/dp1/k", "v")
            ngx.say("after the backoff: ", res and res.status or err)
            local s = etcd.stats()
            ngx.say("dispatcher: ", s.dispatcher, ", restarts: ", s.dispatcher_restarts)
        }
    }
--- response_body
first call: nil internal error: failed to create doorbell: refused by test hook, at once: true
during backoff: nil internal error: failed to create doorbell: refused by test hook
after the backoff: 200
dispatcher: running, restarts: 3
--- error_log eval
[
    qr/etcd_grpc dispatcher stopped: internal error: failed to create doorbell: refused by test hook; restart 1 in 0.01 s/,
    qr/restart 2 in 0.02 s/,
    qr/restart 3 in 0.04 s/,
]
--- no_error_log
restart 4
