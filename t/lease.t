# The lease API (contract section 6): grant, revoke, keepalive, timetolive,
# leases, with lua-resty-etcd's shapes and argument errors. IDs come back as
# decimal strings and are accepted as strings or numbers.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => "env TEST_NGINX_ETCDCTL;\n" . ($block->main_config // ''));
});

run_tests();

__DATA__

=== TEST 1: grant: argument errors, shape, a given ID of 2^53+1 round-trips, a taken ID is refused
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            ngx.say("no ttl: ", select(2, cli:grant()))
            ngx.say("string ttl: ", select(2, cli:grant("10")))
            ngx.say("fractional ttl: ", select(2, cli:grant(2.5)))
            local res, err = cli:grant(60)
            if not res then
                ngx.say("failed to grant: ", err)
                return
            end
            local b = res.body
            ngx.say(res.status, " ID: ", type(b.ID), " ", b.ID:match("^%d+$") ~= nil,
                    ", TTL: ", b.TTL, ", revision: ", b.header.revision ~= nil,
                    ", error: ", tostring(b.error))
            res = cli:grant(60, "9007199254740993")
            ngx.say(res.status, " big ID: ", res.body.ID)
            res = cli:grant(60, "9007199254740993")
            ngx.say(res.status, " again: ", res.body.error)
            -- a wrong argument is misuse: raised, naming the problem
            local ok, err = pcall(cli.grant, cli, 60, "12x")
            ngx.say("bad ID: ", ok, " ", err:match("ID must be integer"))
            assert(cli:revoke("9007199254740993"))
            assert(cli:revoke(b.ID))
        }
    }
--- response_body
no ttl: lease grant command needs TTL argument
string ttl: ttl must be integer
fractional ttl: ttl must be integer
200 ID: string true, TTL: 60, revision: true, error: nil
200 big ID: 9007199254740993
400 again: etcdserver: lease already exists
bad ID: false ID must be integer



=== TEST 2: revoke deletes the lease's keys; an unknown lease is 404 inside res; IDs as numbers
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            ngx.say("no id: ", select(2, cli:revoke()))
            local id = assert(cli:grant(60, 20002)).body.ID
            assert(cli:set("/ls2/a", "1", { lease = id }))
            assert(cli:set("/ls2/b", "2", { lease = 20002 }))
            assert(cli:set("/ls2/c", "3"))
            local res, err = cli:revoke(20002)
            if not res then
                ngx.say("failed to revoke: ", err)
                return
            end
            ngx.say(res.status, " revoke: ", require("etcd_grpc_test").dump(res.body, { "header" }),
                    ", header: ", res.body.header.revision ~= nil)
            local left = assert(cli:readdir("/ls2/")).body.kvs
            ngx.say("keys left: ", #left, " ", left[1].key)
            res = cli:revoke(20002)
            ngx.say(res.status, " again: ", res.body.error, ", code ", res.body.code)
        }
    }
--- response_body
no id: lease revoke command needs ID argument
200 revoke: {}, header: true
keys left: 1 /ls2/c
404 again: etcdserver: requested lease not found, code 5



=== TEST 3: keepalive answers inside result; an unknown lease has no TTL
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            ngx.say("no id: ", select(2, cli:keepalive()))
            assert(cli:grant(60, "30003"))
            local res, err = cli:keepalive("30003")
            if not res then
                ngx.say("failed to keepalive: ", err)
                return
            end
            local r = res.body.result
            ngx.say(res.status, " ID: ", r.ID, ", TTL: ", r.TTL, ", header: ", r.header.revision ~= nil,
                    ", outside result: ", tostring(res.body.ID))
            res = assert(cli:keepalive(30004))
            ngx.say(res.status, " unknown: ", res.body.result.ID, ", TTL: ", tostring(res.body.result.TTL))
            assert(cli:revoke(30003))
        }
    }
--- response_body
no id: lease keepalive command needs ID argument
200 ID: 30003, TTL: 60, header: true, outside result: nil
200 unknown: 30004, TTL: nil



=== TEST 4: timetolive with keys (decoded, prefix included), then -1 once revoked, -1 when unknown
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client({ key_prefix = "/pfx4" })
            ngx.say("no id: ", select(2, cli:timetolive()))
            assert(cli:grant(60, 40004))
            assert(cli:set("/ls4/a", "1", { lease = "40004" }))
            assert(cli:set("/ls4/b", "2", { lease = "40004" }))
            local res, err = cli:timetolive("40004", true)
            if not res then
                ngx.say("failed to timetolive: ", err)
                return
            end
            local b = res.body
            table.sort(b.keys)
            ngx.say(res.status, " ID: ", b.ID, ", TTL <= 60: ", tonumber(b.TTL) <= 60,
                    ", grantedTTL: ", b.grantedTTL, ", keys: ", table.concat(b.keys, " "))
            b = assert(cli:timetolive(40004)).body
            ngx.say("without keys: ", tostring(b.keys))
            assert(cli:revoke(40004))
            b = assert(cli:timetolive(40004, true)).body
            ngx.say("revoked: TTL ", b.TTL, ", grantedTTL ", tostring(b.grantedTTL), ", keys ", tostring(b.keys))
            res = assert(cli:timetolive("40005"))
            ngx.say(res.status, " unknown: ID ", res.body.ID, ", TTL ", res.body.TTL)
        }
    }
--- response_body
no id: lease timetolive command needs ID argument
200 ID: 40004, TTL <= 60: true, grantedTTL: 60, keys: /pfx4/ls4/a /pfx4/ls4/b
without keys: nil
revoked: TTL -1, grantedTTL nil, keys nil
200 unknown: ID 40005, TTL -1



=== TEST 5: leases lists granted IDs as strings, 2^53+1 included
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            assert(cli:grant(60, 50005))
            assert(cli:grant(60, "9007199254750005"))
            local res, err = cli:leases()
            if not res then
                ngx.say("failed to list leases: ", err)
                return
            end
            local seen = {}
            for _, l in ipairs(res.body.leases) do
                seen[l.ID] = type(l.ID)
            end
            ngx.say(res.status, " ", seen["50005"], " ", seen["9007199254750005"],
                    ", header: ", res.body.header.revision ~= nil)
            assert(cli:revoke(50005))
            assert(cli:revoke("9007199254750005"))
            res = assert(cli:leases())
            seen = {}
            for _, l in ipairs(res.body.leases or {}) do seen[l.ID] = true end
            ngx.say("after revoke: ", tostring(seen["50005"]))
        }
    }
--- response_body
200 string string, header: true
after revoke: nil



=== TEST 6: a key with a 2 s lease expires
--- config
    location = /t {
        content_by_lua_block {
            local cli = require("etcd_grpc_test").client()
            local id = assert(cli:grant(2)).body.ID
            assert(cli:set("/ls6/k", "v", { lease = id }))
            local kv = assert(cli:get("/ls6/k")).body.kvs[1]
            ngx.say("before: ", kv.value, ", lease: ", kv.lease == id)
            ngx.sleep(3.5)
            ngx.say("after 3.5 s: ", tostring(assert(cli:get("/ls6/k")).body.kvs))
            ngx.say("ttl: ", assert(cli:timetolive(id)).body.TTL)
        }
    }
--- response_body
before: v, lease: true
after 3.5 s: nil
ttl: -1
--- timeout: 15
