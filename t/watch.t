# watch / watchdir / watchcancel: the gateway's stream, as a reader function,
# with every watcher of the worker on one Watch stream.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(1);
run_tests();

__DATA__

=== TEST 1: created ack, then PUT and DELETE events with prev_kv, values deserialized
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local cli = t.client()
            -- revisions are shown relative to R, the revision of this first
            -- write: earlier blocks (in any order) moved the store's revision
            local res = assert(cli:set("/wa1/k", "v0"))
            local base = tonumber(res.body.header.revision)
            local function rel(field, rev)
                local d = tonumber(rev) - base
                return field .. (d == 0 and "R" or string.format("R%+d", d))
            end
            local reader, err = cli:watchdir("/wa1/", { prev_kv = true, timeout = 5 })
            if not reader then
                ngx.say("failed to watch: ", err)
                return
            end
            local function show(chunk, err)
                if not chunk then return "nil " .. tostring(err) end
                return (t.dump(chunk.result, { "header" }):gsub("(revision=)(%d+)", rel))
            end
            ngx.say("1: ", show(reader()))
            ngx.timer.at(0.05, function()
                local c = t.client()
                c:set("/wa1/k", { x = 1 })
                c:delete("/wa1/k")
            end)
            ngx.say("2: ", show(reader()))
            ngx.say("3: ", show(reader()))
        }
    }
--- response_body
1: {created=true}
2: {events={{kv={create_revision=R,key=/wa1/k,mod_revision=R+1,value={x=1},version=2},prev_kv={create_revision=R,key=/wa1/k,mod_revision=R,value=v0,version=1}}}}
3: {events={{kv={key=/wa1/k,mod_revision=R+2},prev_kv={create_revision=R,key=/wa1/k,mod_revision=R+1,value={x=1},version=2},type=DELETE}}}



=== TEST 2: read timeout ends the watch; watchcancel; closed afterwards
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            local r = assert(cli:watch("/wa2/k", { timeout = 0.3 }))
            ngx.say("created: ", r().result.created)
            ngx.say("idle: ", select(2, r()))
            ngx.say("then: ", select(2, r()))
            local r2, err, h = cli:watch("/wa2/k", { need_cancel = true })
            ngx.say("created: ", r2().result.created, ", handle: ", type(h))
            ngx.say("cancel: ", cli:watchcancel(h))
            ngx.say("cancel again: ", select(2, cli:watchcancel(h)))
            ngx.say("after cancel: ", select(2, r2()))
            ngx.say("bad handle: ", select(2, cli:watchcancel(nil)))
            ngx.say("bad table: ", select(2, cli:watchcancel({})))
            -- lua-resty-etcd's handle is an http client: close() works too
            local r3, _, h3 = cli:watchdir("/wa2/", { need_cancel = true })
            ngx.say("created: ", r3().result.created, ", close: ", h3:close())
            ngx.say("after close: ", select(2, r3()))
        }
    }
--- response_body
created: true
idle: timeout
then: closed
created: true, handle: table
cancel: 1
cancel again: closed
after cancel: closed
bad handle: not initialized
bad table: not initialized
created: true, close: 1
after close: closed



=== TEST 3: a start revision older than the compaction point gets the compaction response
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local first = tonumber(assert(cli:set("/wa3/k", "1")).body.header.revision)
            assert(cli:set("/wa3/k", "2"))
            assert(cli:set("/wa3/k", "3"))
            os.execute("$TEST_NGINX_ETCDCTL --endpoints=$TEST_NGINX_ETCD_HOST compact "
                       .. (first + 2) .. " >/dev/null 2>&1")
            local r = assert(cli:watch("/wa3/k", { start_revision = first, timeout = 3 }))
            local c1 = r()
            ngx.say("created: ", c1.result.created)
            local c2 = r()
            ngx.say("canceled: ", c2.result.canceled, ", compact_revision: ",
                    c2.result.compact_revision == tostring(first + 2))
            ngx.say("then: ", select(2, r()))
        }
    }
--- response_body
created: true
canceled: true, compact_revision: true
then: closed



=== TEST 4: filters and start_revision replay history
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local rev = tonumber(assert(cli:set("/wa4/k", "a")).body.header.revision)
            assert(cli:delete("/wa4/k"))
            assert(cli:set("/wa4/k", "b"))
            local r = assert(cli:watch("/wa4/k", { start_revision = rev, filters = { "NOPUT" }, timeout = 1 }))
            r()
            local c = r()
            ngx.say("only the delete: ", #c.result.events, " ", c.result.events[1].type)
            local r2 = assert(cli:watch("/wa4/k", { start_revision = rev, filters = { 1 }, timeout = 1 }))
            r2()
            local vals = {}
            while #vals < 2 do       -- history may come in one batch or several
                local chunk, err = r2()
                if not chunk then vals[#vals + 1] = err break end
                for _, ev in ipairs(chunk.result.events) do vals[#vals + 1] = ev.kv.value end
            end
            ngx.say("only puts: ", table.concat(vals, ","))
        }
    }
--- response_body
only the delete: 1 DELETE
only puts: a,b



=== TEST 5: an unread reader that is garbage-collected cancels its watcher
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = require("etcd_grpc_test").client()
            local keep = assert(cli:watch("/wa6/kept"))
            -- held until counted (Lua's GC may run at any allocation), then
            -- dropped, never read
            local readers = {}
            for i = 1, 50 do
                readers[i] = assert(cli:watch("/wa6/" .. i))
            end
            ngx.sleep(0.2)
            ngx.say("live before GC: ", etcd.stats().watchers)
            readers = nil
            collectgarbage("collect")
            collectgarbage("collect")
            ngx.sleep(0.2)
            ngx.say("live after GC: ", etcd.stats().watchers)
            ngx.say("kept reader works: ", keep().result.created)
        }
    }
--- response_body
live before GC: 51
live after GC: 1
kept reader works: true
--- timeout: 20



=== TEST 6: a reader that falls behind its buffer is canceled with a clear error, memory stays bounded
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local reader = assert(cli:watch("/wa7/k", { buffer = 2, timeout = 2 }))
            -- created first: the writes must come after the watch exists
            ngx.say("created: ", reader().result.created)
            for i = 1, 10 do assert(cli:set("/wa7/k", tostring(i))) end
            ngx.sleep(0.2)
            -- what fitted in the buffer comes first, then the error
            local events, err = 0
            while true do
                local chunk
                chunk, err = reader()
                if not chunk then break end
                events = events + #chunk.result.events
            end
            ngx.say("events read before the end: ", events >= 1 and events < 10)
            ngx.say("ended with: ", err)
            ngx.say("then: ", select(2, reader()))
            ngx.say("watchers left: ", etcd.stats().watchers)
        }
    }
--- response_body
created: true
events read before the end: true
ended with: watcher buffer full: reader too slow, watcher canceled
then: closed
watchers left: 0
--- timeout: 20



=== TEST 7: the caller's watch_id is echoed as the gateway would (etcd's own ids stay internal)
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local r = assert(cli:watch("/wa8/k", { watch_id = 7 }))
            local plain = assert(cli:watch("/wa8/k"))
            local c = r()
            ngx.say("created: ", c.result.created, ", watch_id: ", c.result.watch_id)
            ngx.say("without watch_id: ", tostring(plain().result.watch_id))
            assert(cli:set("/wa8/k", "v"))
            ngx.say("event watch_id: ", r().result.watch_id, ", other: ", tostring(plain().result.watch_id))
        }
    }
--- response_body
created: true, watch_id: 7
without watch_id: nil
event watch_id: 7, other: nil



=== TEST 8: buffered messages are read at once, in order; a long run of them still yields to other requests
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            local N = 150
            local reader = t.buffered_watch(cli, "/wa9/", function()
                for i = 1, N do assert(cli:set("/wa9/d/k", tostring(i))) end
            end)
            local ran = false
            ngx.thread.spawn(function() ngx.sleep(0) ran = true end)
            local calls = etcd.stats().calls
            local messages, events, in_order, ran_early = 0, 0, true, nil
            while events < N do
                local chunk, err = reader()
                if not chunk then ngx.say("failed: ", err) return end
                messages = messages + 1
                for _, ev in ipairs(chunk.result.events) do
                    events = events + 1
                    in_order = in_order and ev.kv.value == tostring(events)
                end
                if messages == 63 then ran_early = ran end
            end
            ngx.say("events: ", events, ", in order: ", in_order)
            -- 64 messages at a time without a call, then one read through
            -- the bridge, which lets the other light thread run (checked
            -- at the 63rd: the created answer may have been a direct read)
            ngx.say("reads through the bridge: ", etcd.stats().calls - calls,
                    " for ", messages, " messages")
            ngx.say("other thread ran within the first 63: ", ran_early, ", by the end: ", ran)
        }
    }
--- response_body
events: 150, in order: true
reads through the bridge: 2 for 150 messages
other thread ran within the first 63: false, by the end: true
--- timeout: 20



=== TEST 9: the run of direct reads is counted in events: a message of 100 events is followed by a read through the bridge
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local t = require "etcd_grpc_test"
            local cli = t.client({ serializer = "raw" })
            local reader = t.buffered_watch(cli, "/wa10/", function()
                -- one revision, one message of 100 events; then 5 of one
                -- (a compare that holds: no block writes /wa10/absent)
                local ops = {}
                for i = 1, 100 do
                    ops[i] = { requestPut = { key = "/wa10/d/t" .. i, value = "x" } }
                end
                assert(cli:txn({ { key = "/wa10/absent", target = "VERSION", result = "EQUAL",
                                   version = 0 } }, ops))
                for i = 1, 5 do assert(cli:set("/wa10/d/k", tostring(i))) end
            end)
            local calls = etcd.stats().calls
            local sizes = {}
            for i = 1, 6 do
                local chunk = assert(reader())
                sizes[i] = #chunk.result.events
            end
            ngx.say("messages: ", table.concat(sizes, " "))
            -- all buffered: the big message is read directly and spends the
            -- run (100 events > 64), so the next read goes through the
            -- bridge and the four after it are direct again
            ngx.say("reads through the bridge: ", etcd.stats().calls - calls)
        }
    }
--- response_body
messages: 100 1 1 1 1 1
reads through the bridge: 1
--- timeout: 20
