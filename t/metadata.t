# extra_headers as gRPC metadata: `Grpc-Metadata-<name>` headers reach etcd
# as metadata `<name>` (as through etcd's HTTP gateway), on unary calls and on
# watch streams; other headers are dropped; bad ones are refused by new().
#
# The observable effect is etcd's `hasleader` switch: a member that has lost
# its leader refuses calls carrying `hasleader: true` at once ("no leader"),
# while calls without it wait for a leader. The file starts a two-member
# cluster and stops one member, so the other stays without a leader.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

master_on();
workers(1);

my ($lonely, $gone) = start_cluster(2);
stop_etcd($gone);
$ENV{TEST_NGINX_LEADERLESS_HOST} = $lonely->{host};

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => "env TEST_NGINX_LEADERLESS_HOST;\n"
                      . ($block->main_config // ''));
    $block->set_value(timeout => 40) unless defined $block->timeout;
});

run_tests();

__DATA__

=== TEST 1: Grpc-Metadata-hasleader reaches etcd on unary calls: no leader at once, not a wait
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local strict, plain, host = t.leaderless({
                ["Grpc-Metadata-hasleader"] = "true", ["X-Not-Forwarded"] = "1" }, 5, 1)
            local res, err = strict:get("/md/k")
            ngx.say("strict get: ", tostring(res), ", ", err == host .. ": etcdserver: no leader"
                    and "<endpoint>: etcdserver: no leader" or err)
            ngx.update_time()
            local t0 = ngx.now()
            res, err = strict:set("/md/k", "v")
            ngx.update_time()
            ngx.say("strict set: ", tostring(res), ", refused within 1s: ",
                    err:find("no leader", 1, true) ~= nil and ngx.now() - t0 < 1)
            -- without the metadata etcd waits for a leader: our 1 s timeout ends it
            res, err = plain:get("/md/k")
            ngx.say("plain get: ", tostring(res), ", ", err)
        }
    }
--- response_body
strict get: nil, <endpoint>: etcdserver: no leader
strict set: nil, refused within 1s: true
plain get: nil, timeout



=== TEST 2: the metadata goes on the watch stream too (etcd refuses a hasleader stream without a leader)
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local strict, plain, host = t.leaderless({ ["grpc-metadata-HasLeader"] = "true" }, 5, 5)
            -- watch streams require a leader by default; "false" opts out
            local optout = assert(require("etcd_grpc").new({ http_host = host, timeout = 5,
                extra_headers = { ["Grpc-Metadata-hasleader"] = "false" } }))
            local r = assert(optout:watch("/md/w", { timeout = 2 }))
            local res, err = r()
            ngx.say("opted-out watcher: created=", tostring(res and res.result.created), " ", tostring(err))
            r = assert(plain:watch("/md/w", { timeout = 2 }))
            res, err = r()
            ngx.say("plain watcher: ", tostring(res), " ", tostring(err))
            r = assert(strict:watch("/md/w", { timeout = 2 }))
            res, err = r()
            ngx.say("strict watcher: ", tostring(res), " ", tostring(err))
        }
    }
--- response_body
opted-out watcher: created=true nil
plain watcher: nil timeout
strict watcher: nil timeout



=== TEST 3: clients with and without metadata share the worker's two connections; both watch and read
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local plain = t.client({ serializer = "raw" })
            local tagged = t.client({ serializer = "raw", extra_headers = {
                ["Grpc-Metadata-hasleader"] = "true", ["Grpc-Metadata-x-trace"] = 42 } })
            local r1 = assert(plain:watch("/md3/k", { timeout = 5 }))
            local r2 = assert(tagged:watch("/md3/k", { timeout = 5 }))
            assert(r1().result.created)
            assert(r2().result.created)
            assert(tagged:set("/md3/k", "v1"))
            ngx.say("plain sees ", r1().result.events[1].kv.value,
                    ", tagged sees ", r2().result.events[1].kv.value)
            ngx.say("get: ", tagged:get("/md3/k").body.kvs[1].value)
            ngx.say("connections: ", t.established(ngx.worker.pid(), $TEST_NGINX_ETCD_PORT))
            ngx.say("watchers: ", require("etcd_grpc").stats().watchers)
        }
    }
--- response_body
plain sees v1, tagged sees v1
get: v1
connections: 2
watchers: 2



=== TEST 4: headers that cannot be sent are refused by new(), dropped ones are not
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local host = os.getenv("TEST_NGINX_ETCD_HOST")
            local function try(h)
                local cli, err = etcd.new({ http_host = host, extra_headers = h })
                ngx.say(cli and "ok" or err)
            end
            try("x")
            try({ ["Grpc-Metadata-bad name"] = "1" })
            try({ ["Grpc-Metadata-k"] = "two\nlines" })
            try({ ["Grpc-Metadata-k"] = { 1 } })
            try({ ["Grpc-Metadata-blob-bin"] = "AAE=" })
            try({ Authorization = "secret", ["Content-Length"] = "1", Connection = "close",
                  ["Transfer-Encoding"] = "chunked", Upgrade = "h2c", Host = "elsewhere" })
            local cli = assert(etcd.new({ http_host = host, extra_headers = {
                Authorization = "not a token", ["Grpc-Metadata-hasleader"] = "true" } }))
            assert(cli:set("/md4/k", "v"))
            ngx.say("set and get through a tagged client: ", cli:get("/md4/k").body.kvs[1].value)
        }
    }
--- response_body
opts.extra_headers must be table or ignore
opts.extra_headers: invalid metadata name in header Grpc-Metadata-bad name
opts.extra_headers: invalid value for header Grpc-Metadata-k
opts.extra_headers: value of Grpc-Metadata-k must be string
opts.extra_headers: invalid metadata name in header Grpc-Metadata-blob-bin
ok
set and get through a tagged client: v



=== TEST 5: a Watch stream lives as long as its watchers: clients with ever new metadata do not pile up streams
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local etcd = require "etcd_grpc"
            local plain = t.client({ serializer = "raw" })
            local keep = assert(plain:watch("/md5/keep", { timeout = 5 }))
            assert(keep().result.created)
            local readers = {}
            for i = 1, 20 do
                local cli = t.client({ serializer = "raw",
                                       extra_headers = { ["Grpc-Metadata-x-trace"] = "t" .. i } })
                local r = assert(cli:watch("/md5/" .. i, { timeout = 5 }))
                assert(r().result.created)
                readers[i] = r
            end
            local s = etcd.stats()
            ngx.say("with 21 watchers: ", s.watchers, " watchers on ", s.watch_streams, " streams")
            readers = nil
            collectgarbage()
            collectgarbage()
            ngx.sleep(0.2)
            s = etcd.stats()
            ngx.say("after the tagged readers are gone: ", s.watchers, " watcher on ",
                    s.watch_streams, " stream")
            assert(plain:set("/md5/keep", "still"))
            ngx.say("the plain watcher still works: ", keep().result.events[1].kv.value)
            ngx.say("connections: ", t.established(ngx.worker.pid(), $TEST_NGINX_ETCD_PORT))
        }
    }
--- response_body
with 21 watchers: 21 watchers on 21 streams
after the tagged readers are gone: 1 watcher on 1 stream
the plain watcher still works: still
connections: 2
