# Misuse is raised with error(msg, 2), pointing at the caller's line, with
# a message that names the argument; operational failures stay `nil, err`.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: wrong argument types and ranges raise at the caller's line, naming the argument
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            local loop = { compare = {} }
            loop.success = { { requestTxn = loop } }
            local cases = {
                { "opts a number", function() local r = cli:get("/mu1/k", 5) return r end },
                { "opts a string", function() local r = cli:readdir("/mu1/", "x") return r end },
                { "dot call", function() local r = cli.get("/mu1/k") return r end },
                { "negative timeout", function() local r = cli:set("/mu1/k", "v", { timeout = -1 }) return r end },
                { "NaN timeout", function() local r = cli:get("/mu1/k", { timeout = 0/0 }) return r end },
                { "inf timeout", function() local r = cli:delete("/mu1/k", { timeout = math.huge }) return r end },
                { "key a table", function() local r = cli:delete({}) return r end },
                { "key a function", function() local r = cli:watch(print) return r end },
                { "setnx key boolean", function() local r = cli:setnx(true, "v") return r end },
                { "revision text", function() local r = cli:get("/mu1/k", { revision = "abc" }) return r end },
                { "revision NaN", function() local r = cli:get("/mu1/k", { revision = 0/0 }) return r end },
                { "limit huge", function() local r = cli:readdir("/mu1/", { limit = 1e300 }) return r end },
                { "prev_kv a string", function() local r = cli:set("/mu1/k", "v", { prev_kv = "yes" }) return r end },
                { "buffer huge", function() local r = cli:watch("/mu1/k", { buffer = 4e18 }) return r end },
                { "buffer zero", function() local r = cli:watch("/mu1/k", { buffer = 0 }) return r end },
                { "buffer fraction", function() local r = cli:watchdir("/mu1/", { buffer = 1.5 }) return r end },
                { "compare nil", function() local r = cli:txn(nil, {}) return r end },
                { "compare item", function() local r = cli:txn({ 5 }, {}) return r end },
                { "success a string", function() local r = cli:txn({ {} }, "x") return r end },
                { "failure item", function() local r = cli:txn({ {} }, nil, { true }) return r end },
                { "txn that contains itself", function()
                    local r = cli:txn({ { key = "/mu1/k", target = "VERSION", result = "EQUAL", version = 0 } },
                                      { { requestTxn = loop } })
                    return r
                  end },
            }
            for _, c in ipairs(cases) do
                local ok, err = pcall(c[2])
                local at_caller = type(err) == "string"
                                  and err:find("^content_by_lua%(nginx%.conf:%d+%):%d+: ") ~= nil
                ngx.say(c[1], ": ", ok and "returned" or "raised", ", at caller: ", at_caller,
                        ", ", type(err) == "string" and err:gsub("^.-:%d+: ", "") or tostring(err))
            end
        }
    }
--- response_body
opts a number: raised, at caller: true, opts must be a table
opts a string: raised, at caller: true, opts must be a table
dot call: raised, at caller: true, etcd_grpc: call client methods as cli:method(...), not cli.method(...)
negative timeout: raised, at caller: true, opts.timeout must be a non-negative number
NaN timeout: raised, at caller: true, opts.timeout must be a non-negative number
inf timeout: raised, at caller: true, opts.timeout must be a non-negative number
key a table: raised, at caller: true, key must be a string
key a function: raised, at caller: true, key must be a string
setnx key boolean: raised, at caller: true, key must be a string
revision text: raised, at caller: true, revision must be integer
revision NaN: raised, at caller: true, revision must be integer
limit huge: raised, at caller: true, limit must be integer
prev_kv a string: raised, at caller: true, prev_kv must be boolean
buffer huge: raised, at caller: true, buffer must be an integer in 1..1000000
buffer zero: raised, at caller: true, buffer must be an integer in 1..1000000
buffer fraction: raised, at caller: true, buffer must be an integer in 1..1000000
compare nil: raised, at caller: true, compare must be a table
compare item: raised, at caller: true, compare[1] must be a table
success a string: raised, at caller: true, success must be a table
failure item: raised, at caller: true, failure[1] must be a table
txn that contains itself: raised, at caller: true, request_txn nested deeper than 16 levels



=== TEST 2: the contract's own failures stay return values, and a call after misuse works
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            ngx.say("get a number key: ", select(2, cli:get(5)))
            ngx.say("empty key: ", select(2, cli:set("", "v")))
            ngx.say("raw serializer: ", select(2, cli:set("/mu2/k", {})))
            ngx.say("empty compare: ", select(2, cli:txn({}, { {} })))
            ngx.say("cancel a string: ", select(2, cli:watchcancel("x")))
            ngx.say("new bad max_recv_msg_size: ",
                    select(2, etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", max_recv_msg_size = "x" })))
            ngx.say("new zero max_recv_msg_size: ",
                    select(2, etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", max_recv_msg_size = 0 })))
            local bad = { compare = {} }
            for _ = 1, 15 do bad = { compare = {}, success = { { requestTxn = bad } } } end
            local res, err = cli:txn({ { key = "/mu2/k", target = "VERSION", result = "EQUAL", version = 0 } },
                                     bad.success)
            ngx.say("16 levels nested: ", res and res.status, " ", err)
            assert(cli:set("/mu2/k", "after"))
            local res = assert(cli:get("/mu2/k"))
            ngx.say("then: ", res.body.kvs[1].value)
        }
    }
--- response_body
get a number key: key must be string
empty key: key should not be empty
raw serializer: unsupported type for table
empty compare: compare couldn't be empty
cancel a string: not initialized
new bad max_recv_msg_size: opts.max_recv_msg_size must be positive integer or ignore
new zero max_recv_msg_size: opts.max_recv_msg_size must be positive integer or ignore
16 levels nested: 200 nil
then: after



=== TEST 3: enum numbers etcd does not know are refused before they are sent (etcd 3.5.1 crashes on an unknown sort_target)
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ serializer = "raw" })
            assert(cli:set("/mu3/a", "1"))
            local res, err = cli:readdir("/mu3/", { sort_order = 1, sort_target = 9 })
            ngx.say("readdir: ", res and res.status or err, " ", res and res.body.message)
            res, err = cli:readdir("/mu3/", { sort_order = 7 })
            ngx.say("readdir: ", res and res.status or err, " ", res and res.body.message)
            res, err = cli:txn({ { key = "/mu3/a", target = 12, result = "EQUAL", version = 1 } },
                               { { requestPut = { key = "/mu3/a", value = "2" } } })
            ngx.say("txn: ", res and res.status or err, " ", res and res.body.message)
            res, err = cli:readdir("/mu3/", { sort_order = "DESCEND", sort_target = 4 })
            ngx.say("etcd still there: ", res and res.body.kvs[1].value or err)
        }
    }
--- response_body
readdir: 400 unknown value 9 for sort_target
readdir: 400 unknown value 7 for sort_order
txn: 400 unknown value 12 for target
etcd still there: 1
