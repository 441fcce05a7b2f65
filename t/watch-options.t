# Watch options that need a tuned etcd: progress notifications (every
# 500 ms here instead of 10 min) and fragmented responses merged.
BEGIN {
    $ENV{ETCD_GRPC_TEST_ETCD_ARGS} = '--experimental-watch-progress-notify-interval=500ms';
}
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(1);
run_tests();

__DATA__

=== TEST 1: progress_notify: idle watchers get progress responses (header only, no events)
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local rev = assert(cli:set("/wo1/other", "x")).body.header.revision
            local r = assert(cli:watch("/wo1/k", { progress_notify = true, timeout = 5 }))
            r()
            local p = r()
            ngx.say("progress: events ", tostring(p.result.events), ", created ",
                    tostring(p.result.created), ", revision ", p.result.header.revision == rev)
            local quiet = assert(cli:watch("/wo1/k", { timeout = 1.5 }))
            quiet()
            ngx.say("without progress_notify: ", select(2, quiet()))
        }
    }
--- response_body
progress: events nil, created nil, revision true
without progress_notify: timeout
--- timeout: 15



=== TEST 2: fragment: one revision too large for one message comes back as one merged response
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local big = string.rep("f", 100 * 1024)
            for i = 1, 30 do
                assert(cli:set(string.format("/wo2/%02d", i), big))
            end
            local r = assert(cli:watchdir("/wo2/", { fragment = true, prev_kv = true, timeout = 5 }))
            r()
            -- one revision deleting 30 keys, 3 MiB of prev_kv: above etcd's
            -- fragment threshold (--max-request-bytes + 512 KiB = 2 MiB), so
            -- etcd splits it into several messages
            local res = cli:rmdir("/wo2/")
            ngx.say("deleted: ", res.body.deleted)
            local chunk = r()
            local intact = 0
            for _, ev in ipairs(chunk.result.events) do
                if ev.type == "DELETE" and ev.prev_kv.value == big then intact = intact + 1 end
            end
            ngx.say("events in one response: ", #chunk.result.events, ", intact prev values: ", intact,
                    ", fragment flag hidden: ", chunk.result.fragment == nil)
        }
    }
--- response_body
deleted: 30
events in one response: 30, intact prev values: 30, fragment flag hidden: true
--- timeout: 20
