# readdir / delete / rmdir: prefix ranges, options and result shapes.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: readdir returns every key under the prefix, in key order, values deserialized
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client()
            for _, k in ipairs({ "b", "a", "c" }) do
                assert(cli:set("/dir1/" .. k, { name = k }))
            end
            assert(cli:set("/dir10", "outside"))   -- shares the string prefix "/dir1"
            local res, err = cli:readdir("/dir1/")
            if not res then
                ngx.say("failed to readdir: ", err)
                return
            end
            ngx.say("status: ", res.status, ", count: ", res.body.count, ", more: ", tostring(res.body.more))
            for _, kv in ipairs(res.body.kvs) do
                ngx.say(kv.key, " = ", kv.value.name)
            end
        }
    }
--- response_body
status: 200, count: 3, more: nil
/dir1/a = a
/dir1/b = b
/dir1/c = c



=== TEST 2: limit sets more; sort_order and sort_target by name and by number
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw" })
            assert(cli:set("/dir2/a", "3"))
            assert(cli:set("/dir2/b", "1"))
            assert(cli:set("/dir2/c", "2"))
            local function keys(res)
                local out = {}
                for _, kv in ipairs(res.body.kvs) do out[#out + 1] = kv.key:sub(-1) end
                return table.concat(out, ",")
            end
            local res = cli:readdir("/dir2/", { limit = 2 })
            ngx.say("limit 2: ", keys(res), " more: ", tostring(res.body.more), " count: ", res.body.count)
            res = cli:readdir("/dir2/", { sort_order = "DESCEND" })
            ngx.say("descend: ", keys(res))
            res = cli:readdir("/dir2/", { sort_order = 1, sort_target = "VALUE" })
            ngx.say("by value: ", keys(res))
            res = cli:readdir("/dir2/", { sort_order = "DESCEND", sort_target = 3 })
            ngx.say("by mod desc: ", keys(res))
            res = cli:readdir("/dir2/", { sort_order = "SIDEWAYS" })
            ngx.say("bad enum: ", res.status, " ", res.body.code)
        }
    }
--- response_body
limit 2: a,b more: true count: 3
descend: c,b,a
by value: b,c,a
by mod desc: c,b,a
bad enum: 400 3



=== TEST 3: keys_only, count_only, revision
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local json = new_client()
            local raw = new_client({ serializer = "raw" })
            local first = assert(raw:set("/dir3/a", "old"))
            assert(raw:set("/dir3/a", "new"))
            assert(raw:set("/dir3/b", "x"))
            local res = json:readdir("/dir3/", { keys_only = true })
            ngx.say("keys_only json: ", res.body.kvs[1].key, " value nil: ", res.body.kvs[1].value == nil)
            res = raw:readdir("/dir3/", { keys_only = true })
            ngx.say("keys_only raw: [", res.body.kvs[1].value, "]")
            res = raw:readdir("/dir3/", { count_only = true })
            ngx.say("count_only: ", res.body.count, " kvs: ", tostring(res.body.kvs))
            res = raw:readdir("/dir3/", { revision = first.body.header.revision })
            ngx.say("at first revision: ", #res.body.kvs, " ", res.body.kvs[1].value)
            res = raw:get("/dir3/a", { revision = tonumber(first.body.header.revision) })
            ngx.say("get at revision: ", res.body.kvs[1].value)
        }
    }
--- response_body
keys_only json: /dir3/a value nil: true
keys_only raw: []
count_only: 2 kvs: nil
at first revision: 1 old
get at revision: old



=== TEST 4: readdir of an empty key without key_prefix is refused; prefix end handles 0xff
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local etcd = require "etcd_grpc"
            local cli = new_client()
            ngx.say("empty: ", select(2, cli:readdir("")))
            ngx.say("end of 'a': ", etcd.prefix_range_end("a"))
            ngx.say("end of 'a\\xff': ", etcd.prefix_range_end("a\xff"))
            ngx.say("end of '\\xff': ", etcd.prefix_range_end("\xff") == "\0")
            ngx.say("end of '': ", etcd.prefix_range_end("") == "\0")
        }
    }
--- response_body
empty: key should not be empty
end of 'a': b
end of 'a\xff': b
end of '\xff': true
end of '': true



=== TEST 5: delete: deleted count, prev_kvs in base64, nothing deleted, empty key
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw" })
            assert(cli:set("/dir5/k", "bar"))
            local res = cli:delete("/dir5/k", { prev_kv = true })
            ngx.say("status: ", res.status, " deleted: ", res.body.deleted,
                    " prev value: ", res.body.prev_kvs[1].value,
                    " prev key: ", ngx.decode_base64(res.body.prev_kvs[1].key))
            res = cli:delete("/dir5/k")
            ngx.say("again: ", res.status, " deleted: ", tostring(res.body.deleted))
            res = cli:delete("")
            ngx.say("empty key: ", res.status, " ", res.body.error, " code ", res.body.code)
        }
    }
--- response_body
status: 200 deleted: 1 prev value: YmFy prev key: /dir5/k
again: 200 deleted: nil
empty key: 400 etcdserver: key is not provided code 3



=== TEST 6: rmdir removes the prefix only
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw", key_prefix = "/dir6" })
            for _, k in ipairs({ "/x/1", "/x/2", "/x2" }) do assert(cli:set(k, "v")) end
            local res = cli:rmdir("/x/")
            ngx.say("deleted: ", res.body.deleted)
            res = cli:readdir("/")
            ngx.say("left: ", #res.body.kvs, " ", res.body.kvs[1].key)
        }
    }
--- response_body
deleted: 2
left: 1 /dir6/x2



=== TEST 7: compacted and future revisions come back as the gateway's 400 bodies
--- config
    location = /t {
        content_by_lua_block {
            local new_client = require("etcd_grpc_test").client
            local cli = new_client({ serializer = "raw" })
            local r1 = assert(cli:set("/dir7/k", "1"))
            local r2 = assert(cli:set("/dir7/k", "2"))
            os.execute("$TEST_NGINX_ETCDCTL --endpoints=$TEST_NGINX_ETCD_HOST compact "
                       .. r2.body.header.revision .. " >/dev/null 2>&1")
            local res = cli:get("/dir7/k", { revision = r1.body.header.revision })
            ngx.say(res.status, " ", res.body.code, " ", res.body.error)
            res = cli:get("/dir7/k", { revision = 1000000 })
            ngx.say(res.status, " ", res.body.code, " ", res.body.message)
        }
    }
--- response_body
400 11 etcdserver: mvcc: required revision has been compacted
400 11 etcdserver: mvcc: required revision is a future revision
