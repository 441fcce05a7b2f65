# get/set round trips through etcd_grpc, in the shapes of lua-resty-etcd's
# v3 HTTP mode.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: set then get round trip (json serializer)
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli, err = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            if not cli then
                ngx.say("failed to create client: ", err)
                return
            end
            local res, err = cli:set("/kv1/a", { name = "route", n = 7 })
            if not res then
                ngx.say("failed to set: ", err)
                return
            end
            ngx.say("set status: ", res.status)
            ngx.say("set revision is a decimal string: ",
                    type(res.body.header.revision) == "string"
                    and res.body.header.revision:match("^%d+$") ~= nil)
            ngx.say("set has no prev_kv: ", res.body.prev_kv == nil)

            res, err = cli:get("/kv1/a")
            if not res then
                ngx.say("failed to get: ", err)
                return
            end
            local kv = res.body.kvs[1]
            ngx.say("get status: ", res.status, ", count: ", res.body.count)
            ngx.say("key: ", kv.key, ", value: ", kv.value.name, " ", kv.value.n)
            ngx.say("version: ", kv.version, ", lease absent: ", kv.lease == nil)
            ngx.say("mod_revision == create_revision: ", kv.mod_revision == kv.create_revision)
            ngx.say("X-Etcd-Index is header.revision: ",
                    res.headers["X-Etcd-Index"] == res.body.header.revision)
        }
    }
--- response_body
set status: 200
set revision is a decimal string: true
set has no prev_kv: true
get status: 200, count: 1
key: /kv1/a, value: route 7
version: 1, lease absent: true
mod_revision == create_revision: true
X-Etcd-Index is header.revision: true



=== TEST 2: a missing key answers 200 with only a header (no kvs, no count)
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            local res, err = cli:get("/kv2/none")
            if not res then
                ngx.say("failed to get: ", err)
                return
            end
            local keys = {}
            for k in pairs(res.body) do keys[#keys + 1] = k end
            table.sort(keys)
            ngx.say("status: ", res.status)
            ngx.say("body keys: ", table.concat(keys, ","))
            local h = res.body.header
            ngx.say("header: ", type(h.cluster_id), " ", type(h.member_id), " ",
                    type(h.revision), " ", type(h.raft_term))
        }
    }
--- response_body
status: 200
body keys: header
header: string string string string



=== TEST 3: key_prefix is prepended on write and kept in returned keys
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local pre = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", key_prefix = "/kv3" })
            local plain = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            local res, err = pre:set("/x", "prefixed")
            if not res then
                ngx.say("failed to set: ", err)
                return
            end
            res = pre:get("/x")
            ngx.say("through prefix: ", res.body.kvs[1].key, " = ", res.body.kvs[1].value)
            res = plain:get("/kv3/x")
            ngx.say("without prefix: ", res.body.kvs[1].key, " = ", res.body.kvs[1].value)
            res = plain:get("/x")
            ngx.say("bare key absent: ", res.body.kvs == nil)
        }
    }
--- response_body
through prefix: /kv3/x = prefixed
without prefix: /kv3/x = prefixed
bare key absent: true



=== TEST 4: the json serializer stores cjson text; raw stores bytes as given
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local json = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            local raw = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })

            assert(json:set("/kv4/s", "abc"))
            assert(json:set("/kv4/n", 42))
            assert(json:set("/kv4/t", { a = "x/y" }))
            for _, k in ipairs({ "s", "n", "t" }) do
                local res = raw:get("/kv4/" .. k)
                ngx.say(k, " stored as: ", res.body.kvs[1].value)
            end

            assert(raw:set("/kv4/r", "not json {"))
            ngx.say("raw read by raw: ", raw:get("/kv4/r").body.kvs[1].value)
            ngx.say("raw read by json is nil: ", json:get("/kv4/r").body.kvs[1].value == nil)
            ngx.say("json read by json: ", json:get("/kv4/s").body.kvs[1].value)
        }
    }
--- response_body
s stored as: "abc"
n stored as: 42
t stored as: {"a":"x\/y"}
raw read by raw: not json {
raw read by json is nil: true
json read by json: abc



=== TEST 5: raw serializer refuses non-strings; empty values
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local raw = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            local json = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            local res, err = raw:set("/kv5/t", { 1 })
            ngx.say("table: ", res, " ", err)
            res, err = raw:set("/kv5/n", 5)
            ngx.say("number: ", res, " ", err)

            assert(raw:set("/kv5/empty", ""))
            local kv = raw:get("/kv5/empty").body.kvs[1]
            ngx.say("raw empty value: [", kv.value, "]")
            kv = json:get("/kv5/empty").body.kvs[1]
            ngx.say("json empty value is nil: ", kv.value == nil)
        }
    }
--- response_body
table: nil unsupported type for table
number: nil unsupported type for number
raw empty value: []
json empty value is nil: true



=== TEST 6: set with prev_kv returns the previous pair base64-encoded, like the gateway
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "raw" })
            assert(cli:set("/kv6/k", "bar"))
            local res, err = cli:set("/kv6/k", "baz", { prev_kv = true })
            if not res then
                ngx.say("failed to set: ", err)
                return
            end
            local p = res.body.prev_kv
            ngx.say("key: ", p.key, " value: ", p.value, " version: ", p.version)
            ngx.say("decoded: ", ngx.decode_base64(p.key), " ", ngx.decode_base64(p.value))
        }
    }
--- response_body
key: L2t2Ni9r value: YmFy version: 1
decoded: /kv6/k bar



=== TEST 7: bad keys get the contract's messages
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            ngx.say("get number: ", select(2, cli:get(1)))
            ngx.say("get nil: ", select(2, cli:get(nil)))
            ngx.say("get empty: ", select(2, cli:get("")))
            ngx.say("set empty: ", select(2, cli:set("", "v")))
        }
    }
--- response_body
get number: key must be string
get nil: key must be string
get empty: key should not be empty
set empty: key should not be empty



=== TEST 8: version() has the shape of the gateway's GET /version
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            local res, err = cli:version()
            if not res then
                ngx.say("failed to get version: ", err)
                return
            end
            ngx.say("status: ", res.status)
            ngx.say("etcdserver: ", res.body.etcdserver)
            ngx.say("etcdcluster: ", res.body.etcdcluster)
        }
    }
--- response_body eval
my ($maj, $min) = split /\./, $ENV{TEST_NGINX_ETCD_VERSION};
"status: 200\netcdserver: $ENV{TEST_NGINX_ETCD_VERSION}\netcdcluster: $maj.$min.0\n"



=== TEST 9: an unreachable endpoint fails with "<endpoint>: <reason>", never a crash
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = etcd.new({ http_host = "http://127.0.0.1:1", timeout = 2 })
            local res, err = cli:get("/kv9")
            ngx.say(res, " ", err)
            res, err = cli:set("/kv9", "v")
            ngx.say(res, " ", err)
        }
    }
--- response_body
nil http://127.0.0.1:1: connection refused
nil http://127.0.0.1:1: connection refused



=== TEST 10: code written for lua-resty-etcd runs through the compat path unchanged
--- config
    location = /t {
        content_by_lua_block {
            package.path = "$TEST_NGINX_ROOT/lua/compat/?.lua;" .. package.path
            local etcd = require "resty.etcd"
            local cli, err = etcd.new({ protocol = "v3", http_host = "$TEST_NGINX_ETCD_HOST",
                                        key_prefix = "/kv10" })
            if not cli then
                ngx.say("failed to create client: ", err)
                return
            end
            assert(cli:set("/a", { x = 1 }))
            local res = cli:get("/a")
            ngx.say("module version: ", etcd.version, ", via etcd_grpc: ",
                    getmetatable(cli).__index == require("etcd_grpc"))
            ngx.say(res.body.kvs[1].key, " ", res.body.kvs[1].value.x)
        }
    }
--- response_body
module version: 0.9, via etcd_grpc: true
/kv10/a 1



=== TEST 11: many replies at once keep their own revisions (int64 strings from the reply string cache)
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST",
                                          serializer = "raw" }))
            -- 300 concurrent sets: more distinct revisions than the cache
            -- has number slots, most of them delivered in shared batches
            local dir = "/kv11/" .. ngx.worker.pid() .. "-" .. ngx.now() .. "/"
            local n, threads, revs = 300, {}, {}
            for i = 1, n do
                threads[i] = ngx.thread.spawn(function()
                    local res, err = cli:set(dir .. i, "v" .. i)
                    if not res then
                        return nil, err
                    end
                    if res.headers["X-Etcd-Index"] ~= res.body.header.revision then
                        return nil, "X-Etcd-Index differs from header.revision"
                    end
                    return res.body.header.revision
                end)
            end
            local seen, bad = {}, 0
            for i = 1, n do
                local _, rev, err = ngx.thread.wait(threads[i])
                if not rev then
                    ngx.say("set ", i, ": ", err)
                    bad = bad + 1
                elseif seen[rev] then
                    ngx.say("revision ", rev, " answered twice")
                    bad = bad + 1
                end
                if rev then
                    seen[rev], revs[i] = true, rev
                end
            end
            ngx.say("distinct revisions: ", bad == 0)
            -- each key's mod_revision, read back, is the revision its set got
            local res = assert(cli:readdir(dir))
            local wrong = 0
            for _, kv in ipairs(res.body.kvs) do
                local i = tonumber(kv.key:sub(#dir + 1))
                if kv.mod_revision ~= revs[i] or kv.value ~= "v" .. i then
                    wrong = wrong + 1
                end
            end
            ngx.say("keys: ", #res.body.kvs, ", wrong: ", wrong)
        }
    }
--- response_body
distinct revisions: true
keys: 300, wrong: 0
