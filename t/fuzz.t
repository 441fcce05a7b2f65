# Random calls of every public method (random types and values: nil, NaN,
# inf, huge and negative numbers, binary strings, nested and
# self-referencing tables, functions, ngx.null), with fixed seeds: the
# worker survives, nothing raised carries the library's inside text, and a
# normal call works afterwards. The mirror's calls are also timed: none may
# wait longer than its arguments allow (TEST 3).
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: 100,000 random method calls in one worker, 16 light threads, seeds 1-4
--- config
    location = /t {
        content_by_lua_block {
            local fuzz = require "fuzz"
            local t = require "etcd_grpc_test"
            local pid = ngx.worker.pid()
            local cli = t.client({ serializer = "raw", key_prefix = "/fz1", timeout = 2 })
            local tally = fuzz.tally()
            for seed = 1, 4 do
                ngx.say("seed ", seed)
                fuzz.drive(tally, fuzz.calls(seed, 25000), 16, function(c)
                    local self = c[2] == 1 and cli or c[3]
                    return pcall(cli[c[1]], self, c[3], c[4], c[5], c[6])
                end, "seed " .. seed)
                collectgarbage()
            end
            ngx.say("calls: ", tally.raised + tally.returned, ", raised some: ", tally.raised > 1000,
                    ", returned some: ", tally.returned > 1000, ", internal texts: ", tally.leaks)
            ngx.say("same worker: ", ngx.worker.pid() == pid)
            local res, err = cli:set("/after", "fine")
            res, err = cli:get("/after")
            ngx.say("a normal call afterwards: ", res and res.body.kvs[1].value or err)
        }
    }
--- timeout: 240
--- response_body
seed 1
seed 2
seed 3
seed 4
calls: 100000, raised some: true, returned some: true, internal texts: 0
same worker: true
a normal call afterwards: fine
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal



=== TEST 2: 20,000 random option tables for new(): a client or nil and a message, never a raise with the library's inside text
--- config
    location = /t {
        content_by_lua_block {
            local fuzz = require "fuzz"
            local etcd = require "etcd_grpc"
            local made, refused, leaks = 0, 0, 0
            for seed = 11, 12 do
                ngx.say("seed ", seed)
                for _, opts in ipairs(fuzz.new_opts(seed, 10000)) do
                    if type(opts.http_host) == "string" or type(opts.http_host) == "table" then
                        -- never dial anything but loopback
                        opts.http_host = "http://127.0.0.1:1"
                    end
                    local ok, cli, err = pcall(etcd.new, opts)
                    if not ok then
                        leaks = leaks + 1
                        if leaks < 5 then ngx.say("raised: ", tostring(cli)) end
                    elseif cli then
                        made = made + 1
                    else
                        refused = refused + 1
                        if type(err) ~= "string" or fuzz.internal(err) then
                            leaks = leaks + 1
                            if leaks < 5 then ngx.say("leak: ", tostring(err)) end
                        end
                    end
                end
            end
            ngx.say("made some: ", made > 100, ", refused some: ", refused > 100,
                    ", leaks: ", leaks)
        }
    }
--- response_body
seed 11
seed 12
made some: true, refused some: true, leaks: 0
--- no_error_log
[alert]
[crit]



=== TEST 3: 20,000 random mirror calls (cli:mirror and every method of the mirror), 8 light threads and a writer: clear raises or nil, err; no call waits past its due, the worker survives
--- config
    location = /t {
        content_by_lua_block {
            local fuzz = require "fuzz"
            local t = require "etcd_grpc_test"
            local pid = ngx.worker.pid()
            local cli = t.client({ serializer = "raw", key_prefix = "/fzm", timeout = 2 })
            local KNOWN = { ["/a/"] = true, ["/b/"] = true, ["/"] = true }
            local live = assert(cli:mirror("/a/"))
            local closed = assert(cli:mirror("/closed/"))
            closed:close()
            -- moves every known prefix on, so that a wait for a near
            -- revision ends within milliseconds whatever its timeout
            local done = false
            local writer = ngx.thread.spawn(function()
                local i = 0
                while not done do
                    i = i + 1
                    cli:set(i % 2 == 0 and "/a/k" or "/b/k", tostring(i))
                    ngx.sleep(0.005)
                end
            end)
            local function run(c)
                local method, a1, a2 = c[1], c[3], c[4]
                if method == "mirror" then
                    local ok, m, err = pcall(cli.mirror, c[2] == 2 and a2 or cli, a1, a2)
                    if ok and m and KNOWN[a1] then live = m end
                    return ok, m, err
                end
                local self = c[2] == 2 and a1 or (c[2] == 3 and closed or live)
                if method == "wait" and a1 == "near" then
                    local got, rev = pcall(live.revision, live)
                    a1 = tostring((got and tonumber(rev) or 0) + math.random(1, 3))
                elseif method == "wait" and a1 == "reached" then
                    a1 = "1"
                end
                return pcall(live[method], self, a1, a2)
            end
            local tally = fuzz.tally()
            for seed = 21, 24 do
                ngx.say("seed ", seed)
                -- slow: past the mirror's 10 s load bound (a hang, not load)
                fuzz.drive(tally, fuzz.mirror_calls(seed, 5000), 8, run, "seed " .. seed, 12)
                collectgarbage()
            end
            done = true
            ngx.thread.wait(writer)
            ngx.say("calls: ", tally.raised + tally.returned, ", raised some: ", tally.raised > 500,
                    ", returned some: ", tally.returned > 500, ", internal texts: ", tally.leaks,
                    ", slow calls: ", tally.slow)
            ngx.say("same worker: ", ngx.worker.pid() == pid)
            local m = assert(cli:mirror("/a/"))
            assert(cli:set("/a/after", "fine"))
            local rev = assert(cli:get("/a/after")).body.header.revision
            ngx.say("a mirror afterwards: ", m:wait(rev, 5), " ", m:get("/fzm/a/after"))
        }
    }
--- timeout: 120
--- response_body
seed 21
seed 22
seed 23
seed 24
calls: 20000, raised some: true, returned some: true, internal texts: 0, slow calls: 0
same worker: true
a mirror afterwards: true fine
--- no_error_log
[alert]
[crit]
[emerg]
exited on signal
