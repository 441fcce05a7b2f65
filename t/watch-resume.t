# Nothing lost: a watcher sees every revision exactly once, in order, also
# when etcd is killed and restarted under it (same data dir).
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(1);
run_tests();

__DATA__

=== TEST 1: 20,000 puts across 50 keys, etcd killed and restarted twice: every revision once, in order
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            local N = 20000
            -- a read that waits 10 s with no event ends the run (etcd restarts
            -- take about a second, several on a loaded machine)
            local reader = assert(cli:watchdir("/wr/", { timeout = 10 }))
            local created = reader()
            local start = tonumber(created.result.header.revision)

            local acked, done = {}, false
            ngx.timer.at(0, function()
                local w = t.client({ serializer = "raw", timeout = 2 })
                for i = 1, N do
                    if i == math.floor(N / 3) or i == math.floor(2 * N / 3) then
                        -- in the background: the worker keeps running. Right
                        -- after etcd is back, and before the watch stream's
                        -- backoff lets it reconnect, three more puts land:
                        -- only a resume from the last seen revision sees them.
                        local ctl = "$TEST_NGINX_ETCDCTL --endpoints=$TEST_NGINX_ETCD_HOST put /wr/ctl "
                        os.execute("( $TEST_NGINX_ETCD_RESTART 1.5 && " .. ctl .. "1 && "
                                   .. ctl .. "2 && " .. ctl .. "3 && echo done >> "
                                   .. "$TEST_NGINX_ETCD_DATA_DIR/restarts ) >/dev/null 2>&1 &")
                    end
                    while true do
                        local res = w:set("/wr/" .. (i % 50), tostring(i))
                        if res and res.status == 200 then
                            acked[#acked + 1] = tonumber(res.body.header.revision)
                            break
                        end
                        ngx.sleep(0.05)
                    end
                end
                done = true
            end)

            local seen, dups, gaps, last = {}, 0, 0, start
            while true do
                local chunk, err = reader()
                if not chunk then
                    if not done or last < acked[#acked] then
                        ngx.say("reader ended early: ", err)
                    end
                    break
                end
                for _, ev in ipairs(chunk.result.events or {}) do
                    local rev = tonumber(ev.kv.mod_revision)
                    if seen[rev] then dups = dups + 1 end
                    if rev ~= last + 1 then gaps = gaps + 1 end
                    seen[rev] = true
                    last = rev
                end
            end
            local missing = 0
            for _, rev in ipairs(acked) do
                if not seen[rev] then missing = missing + 1 end
            end
            local final = tonumber(cli:get("/wr/0").body.header.revision)
            ngx.say("every revision of the prefix seen: ", last == final,
                    ", etcdctl's puts included: ", final - start >= N + 6)
            local f = io.open("$TEST_NGINX_ETCD_DATA_DIR/restarts")
            local restarts = f and select(2, f:read("*a"):gsub("done", "")) or 0
            if f then f:close() end
            ngx.say("etcd restarts completed: ", restarts)
            ngx.say("acknowledged puts: ", #acked)
            ngx.say("acknowledged but not seen: ", missing)
            ngx.say("duplicates: ", dups, ", out of order or gaps: ", gaps)
        }
    }
--- response_body
every revision of the prefix seen: true, etcdctl's puts included: true
etcd restarts completed: 2
acknowledged puts: 20000
acknowledged but not seen: 0
duplicates: 0, out of order or gaps: 0
--- timeout: 240
--- no_error_log
[alert]



=== TEST 2: writes made while the stream is broken and not yet resumed are delivered
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local bridge = require "etcd_grpc.bridge"
            local cli = t.client({ serializer = "raw" })
            local reader = assert(cli:watchdir("/wr2/", { timeout = 15 }))
            reader()
            assert(cli:set("/wr2/a", "1"))
            ngx.say("before: ", reader().result.events[1].kv.value)

            -- hold the runtime thread: the watch stream cannot notice the
            -- restart, nor reconnect, until the writes below are done
            local stall = ngx.thread.spawn(function()
                return bridge.call(cli._native, "stall", { ms = 4000 }, 10)
            end)
            ngx.sleep(0.2)
            local ctl = "$TEST_NGINX_ETCDCTL --endpoints=$TEST_NGINX_ETCD_HOST put /wr2/"
            local ok = os.execute("$TEST_NGINX_ETCD_RESTART 0.2 >/dev/null 2>&1 && "
                                  .. ctl .. "b 2 >/dev/null && " .. ctl .. "c 3 >/dev/null")
            ngx.say("restarted and written: ", ok == 0 or ok == true)
            ngx.thread.wait(stall)

            local vals = {}
            while #vals < 2 do
                local chunk, err = reader()
                if not chunk then vals[#vals + 1] = err break end
                for _, ev in ipairs(chunk.result.events or {}) do vals[#vals + 1] = ev.kv.value end
            end
            ngx.say("after resume: ", table.concat(vals, ","))
        }
    }
--- response_body
before: 1
restarted and written: true
after resume: 2,3
--- timeout: 40



=== TEST 3: etcd wiped under a watcher: revisions went backwards, reported like a compaction
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            for i = 1, 20 do assert(cli:set("/wr3/k", tostring(i))) end
            local reader = assert(cli:watchdir("/wr3/", { timeout = 15 }))
            reader()
            assert(cli:set("/wr3/k", "last"))
            ngx.say("before: ", reader().result.events[1].kv.value)
            local ok = os.execute("$TEST_NGINX_ETCD_RESTART 0.2 wipe >/dev/null 2>&1")
            ngx.say("wiped: ", ok == 0 or ok == true)
            local chunk, err = reader()
            if not chunk then
                ngx.say("failed to read: ", err)
                return
            end
            local r = chunk.result
            ngx.say("canceled: ", r.canceled, ", compact_revision set: ", tonumber(r.compact_revision) ~= nil)
            ngx.say("reason: ", (r.cancel_reason:gsub("%d+", "N")))
            ngx.say("then: ", select(2, reader()))
            ngx.say("a new watch works: ", cli:watchdir("/wr3/")().result.created)
        }
    }
--- response_body
before: last
wiped: true
canceled: true, compact_revision set: true
reason: etcd revision went backwards: N after N was delivered
then: closed
a new watch works: true
--- timeout: 30
