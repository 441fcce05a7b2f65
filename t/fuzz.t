# Random calls of every public method (random types and values: nil, NaN,
# inf, huge and negative numbers, binary strings, nested and
# self-referencing tables, functions, ngx.null), with fixed seeds: the
# worker survives, nothing raised carries the library's inside text, and a
# normal call works afterwards.
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
            local raised, returned, leaks, shown = 0, 0, 0, 0
            local function check(where, err)
                local bad = type(err) ~= "string" and "a " .. type(err) or fuzz.internal(err)
                if bad then
                    leaks = leaks + 1
                    if shown < 5 then
                        shown = shown + 1
                        ngx.say("leak (", bad, ") in ", where, ": ", tostring(err))
                    end
                end
            end
            for seed = 1, 4 do
                ngx.say("seed ", seed)
                local calls = fuzz.calls(seed, 25000)
                local next_call = 0
                local function worker()
                    while true do
                        next_call = next_call + 1
                        local c = calls[next_call]
                        if not c then return end
                        local self = c[2] == 1 and cli or c[3]
                        local ok, res, err = pcall(cli[c[1]], self, c[3], c[4], c[5], c[6])
                        if not ok then
                            raised = raised + 1
                            check(c[1] .. " (raised, seed " .. seed .. ", call " .. next_call .. ")", res)
                        else
                            returned = returned + 1
                            if res == nil and err ~= nil then
                                check(c[1] .. " (returned, seed " .. seed .. ")", err)
                            end
                        end
                    end
                end
                local threads = {}
                for i = 1, 16 do threads[i] = ngx.thread.spawn(worker) end
                for i = 1, 16 do ngx.thread.wait(threads[i]) end
                collectgarbage()
            end
            ngx.say("calls: ", raised + returned, ", raised some: ", raised > 1000,
                    ", returned some: ", returned > 1000, ", internal texts: ", leaks)
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
