# txn, setnx, setx: lua-resty-etcd's argument rules and the gateway's shapes.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: APISIX-style compare-and-put on mod_revision
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ key_prefix = "/tx1" })
            local r = assert(cli:set("/route", { v = 1 }))
            local rev = r.body.header.revision
            local res, err = cli:txn(
                { { key = "/route", target = "MOD", result = "EQUAL", mod_revision = rev } },
                { { requestPut = { key = "/route", value = { v = 2 } } } })
            if not res then
                ngx.say("failed to txn: ", err)
                return
            end
            ngx.say("succeeded: ", res.body.succeeded, ", response: ",
                    (next(res.body.responses[1])), ", nested header keys: ",
                    (next(res.body.responses[1].response_put.header)))
            ngx.say("value now: ", cli:get("/route").body.kvs[1].value.v)
            -- stale revision: compare fails, no succeeded member at all
            res = cli:txn(
                { { key = "/route", target = "MOD", result = "EQUAL", mod_revision = rev } },
                { { requestPut = { key = "/route", value = { v = 3 } } } })
            ngx.say("stale: status ", res.status, ", succeeded: ", tostring(res.body.succeeded),
                    ", responses: ", tostring(res.body.responses))
        }
    }
--- response_body
succeeded: true, response: response_put, nested header keys: revision
value now: 2
stale: status 200, succeeded: nil, responses: nil



=== TEST 2: every compare target, names and numbers, with results
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw" })
            local r = assert(cli:set("/tx2/k", "val"))
            local rev = tonumber(r.body.header.revision)
            local ok = { { requestPut = { key = "/tx2/ok", value = "1" } } }
            local cases = {
                { "VERSION = 1", { key = "/tx2/k", target = "VERSION", result = "EQUAL", version = 1 } },
                { "CREATE = rev", { key = "/tx2/k", target = "CREATE", createRevision = rev } },
                { "MOD > rev-1", { key = "/tx2/k", target = 2, result = "GREATER", mod_revision = rev - 1 } },
                { "VALUE = val", { key = "/tx2/k", target = "VALUE", result = "EQUAL", value = "val" } },
                { "VALUE != val", { key = "/tx2/k", target = 3, result = 3, value = "val" } },
                { "LEASE = 0", { key = "/tx2/k", target = "LEASE", lease = 0 } },
                { "VERSION < 1", { key = "/tx2/k", target = "VERSION", result = "LESS", version = "1" } },
                { "missing CREATE = 0", { key = "/tx2/none", target = "CREATE", create_revision = 0 } },
            }
            for _, c in ipairs(cases) do
                local res, err = cli:txn({ c[2] }, ok)
                ngx.say(c[1], ": ", res and tostring(res.body.succeeded) or err)
            end
        }
    }
--- response_body
VERSION = 1: true
CREATE = rev: true
MOD > rev-1: true
VALUE = val: true
VALUE != val: nil
LEASE = 0: true
VERSION < 1: nil
missing CREATE = 0: true



=== TEST 3: non-put ops pass as the caller wrote them (base64), snake and camel case, nested txn
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw" })
            assert(cli:set("/tx3/a", "A"))
            assert(cli:set("/tx3/b", "B"))
            local b64 = ngx.encode_base64
            local res = cli:txn(
                { { key = "/tx3/a", target = "VALUE", value = "A" } },
                {
                    { requestRange = { key = b64("/tx3/a") } },
                    { request_range = { key = b64("/tx3/"), range_end = b64("/tx30"), count_only = true } },
                    { requestDeleteRange = { key = b64("/tx3/b"), prevKv = true } },
                    { request_put = { key = b64("/tx3/c"), value = b64("C") } },
                    { requestTxn = {
                        -- nested compares see the store as it was before the txn
                        compare = { { key = b64("/tx3/a"), target = "VALUE", value = b64("A") } },
                        success = { { request_range = { key = b64("/tx3/a") } } },
                    } },
                })
            local r = res.body.responses
            ngx.say("succeeded: ", res.body.succeeded, ", responses: ", #r)
            ngx.say("range value (base64): ", r[1].response_range.kvs[1].value)
            ngx.say("count only: ", r[2].response_range.count, " kvs: ", tostring(r[2].response_range.kvs))
            ngx.say("deleted: ", r[3].response_delete_range.deleted,
                    " prev: ", r[3].response_delete_range.prev_kvs[1].value)
            ngx.say("put: ", (next(r[4])))
            local inner = r[5].response_txn
            ngx.say("nested: ", inner.succeeded, " ", inner.responses[1].response_range.kvs[1].value)
            ngx.say("c stored raw: ", cli:get("/tx3/c").body.kvs[1].value)
        }
    }
--- response_body
succeeded: true, responses: 5
range value (base64): QQ==
count only: 2 kvs: nil
deleted: 1 prev: Qg==
put: response_put
nested: true QQ==
c stored raw: C



=== TEST 4: failure branch runs when the compare fails; failure ops are never rewritten
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw", key_prefix = "/tx4" })
            local b64 = ngx.encode_base64
            local res = cli:txn(
                { { key = "/k", target = "VERSION", result = "GREATER", version = 0 } },
                nil,
                { { requestPut = { key = b64("/tx4/k"), value = b64("from failure") } } })
            ngx.say("succeeded: ", tostring(res.body.succeeded), " responses: ", #res.body.responses)
            ngx.say(cli:get("/k").body.kvs[1].value)
        }
    }
--- response_body
succeeded: nil responses: 1
from failure



=== TEST 5: argument errors, bad base64 and etcd's txn refusals
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw" })
            local put = { { requestPut = { key = "/tx5/k", value = "v" } } }
            ngx.say("empty compare: ", select(2, cli:txn({}, put)))
            ngx.say("no ops: ", select(2, cli:txn({ { key = "/tx5/k" } }, {}, nil)))
            ngx.say("nil compare raises: ", not pcall(cli.txn, cli, nil, put))
            ngx.say("bad value: ", select(2, cli:txn({ { key = "/tx5/k", target = "VALUE", value = {} } }, put)))
            local res = cli:txn({ { key = "/tx5/k" } }, { { requestRange = { key = "%%%" } } })
            ngx.say("bad base64: ", res.status, " ", res.body.code, " ", res.body.error)
            res = cli:txn({ { key = "/tx5/k" } }, { put[1], put[1] })
            ngx.say("duplicate key: ", res.status, " ", res.body.error)
            local many = {}
            for i = 1, 129 do many[i] = { requestPut = { key = "/tx5/m" .. i, value = "v" } } end
            res = cli:txn({ { key = "/tx5/k" } }, many)
            ngx.say("too many ops: ", res.status, " ", res.body.error)
        }
    }
--- response_body
empty compare: compare couldn't be empty
no ops: success and failure couldn't be empty at the same time
nil compare raises: true
bad value: failed to encode value: unsupported type for table
bad base64: 400 3 illegal base64 data at input byte 0
duplicate key: 400 etcdserver: duplicate key given in txn request
too many ops: 400 etcdserver: too many operations in txn request



=== TEST 6: setnx puts only a new key, setx only an existing one
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ key_prefix = "/tx6" })
            local res = cli:setnx("/a", "first")
            ngx.say("setnx new: ", tostring(res.body.succeeded))
            res = cli:setnx("/a", "second")
            ngx.say("setnx existing: ", tostring(res.body.succeeded), " ", cli:get("/a").body.kvs[1].value)
            res = cli:setx("/b", "x")
            ngx.say("setx missing: ", tostring(res.body.succeeded), " ", tostring(cli:get("/b").body.kvs))
            res = cli:setx("/a", "third")
            ngx.say("setx existing: ", tostring(res.body.succeeded), " ", cli:get("/a").body.kvs[1].value)
            local raw = new_client({ serializer = "raw" })
            ngx.say("encode error: ", select(2, raw:setnx("/tx6/c", {})))
        }
    }
--- response_body
setnx new: true
setnx existing: nil first
setx missing: true nil
setx existing: nil third
encode error: failed to encode val: unsupported type for table
