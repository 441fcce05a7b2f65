# Differential conformance of WATCH (companion of t/conformance.t): every
# scenario opens a watch through etcd_grpc's cli:watch / cli:watchdir reader
# (native gRPC, against $TEST_NGINX_ETCD_HOST) and through
# t/lib/gateway_client.lua's watch / watchdir, a look-alike of
# lua-resty-etcd v1.10.7's HTTP mode (POST /v3/watch on the gRPC-gateway of a
# second etcd from the same $ETCD_BIN, $TEST_NGINX_ETCD_GW_HOST), does the
# same writes on both stores (each side with its own client) and compares the
# sequences of reader() results in order, field by field
# (t/lib/conformance.lua watch_run): header.cluster_id/member_id/raft_term
# are ignored, revision fields are compared through the grpc<->gateway
# revision correspondence.
#
# Each scenario prints `ok <name>` or `DIFF <name>: <path>: <grpc> vs
# <gateway>; ...`.
#
# Run:
#   TEST_NGINX_LOAD_MODULES="/usr/lib/nginx/modules/ndk_http_module.so \
#     /usr/lib/nginx/modules/ngx_http_lua_module.so" \
#   ETCD_BIN=/usr/bin/etcd prove -I t/lib/runner t/watch-conformance.t
# (TEST 1's last scenario compacts both etcds: meant for throwaway etcds.)
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(1);

our $Gateway = start_etcd(gateway => 1);
$ENV{TEST_NGINX_ETCD_GW_HOST} = $Gateway->{host};
Test::More::diag("watch-conformance: etcd under test is $ENV{TEST_NGINX_ETCD_VERSION}, "
                 . "gateway etcd is $Gateway->{version}")
    if ($Gateway->{version} // '') ne ($ENV{TEST_NGINX_ETCD_VERSION} // '');

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => join('', map { "env $_;\n" }
        qw(TEST_NGINX_ETCD_GW_HOST TEST_NGINX_ETCD_VERSION TEST_NGINX_ETCDCTL
           TEST_NGINX_CONFORMANCE_VERBOSE)) . ($block->main_config // ''));
    $block->set_value(timeout => 90) unless defined $block->timeout;
});

run_tests();

__DATA__

=== TEST 1: watch / watchdir responses, gateway vs etcd_grpc
--- config
    location = /t {
        content_by_lua_block {
            local C = require "conformance"
            local function raw(s) return s.client({ serializer = "raw" }) end
            C.watch_run({
                { "created ack", n = 1,
                  watch = function(c) return c:watch("/wc/1/k", { timeout = 3 }) end },

                { "PUT event, json table value", n = 2,
                  watch = function(c) return c:watch("/wc/2/k", { timeout = 3 }) end,
                  writes = function(c) assert(c:set("/wc/2/k", { x = 1, s = "a/b" })) end },

                { "DELETE event (no value, type DELETE)", n = 2,
                  before = function(c) assert(c:set("/wc/3/k", "v0")) end,
                  watch = function(c) return c:watch("/wc/3/k", { timeout = 3 }) end,
                  writes = function(c) assert(c:delete("/wc/3/k")) end },

                { "prev_kv on PUT and DELETE", n = 3,
                  before = function(c) assert(c:set("/wc/4/k", "v0")) end,
                  watch = function(c) return c:watch("/wc/4/k", { prev_kv = true, timeout = 3 }) end,
                  writes = function(c)
                      assert(c:set("/wc/4/k", { x = 1 }))
                      assert(c:delete("/wc/4/k"))
                  end },

                { "watchdir over a prefix, several keys", n = 5,
                  watch = function(c) return c:watchdir("/wc/5/", { timeout = 3 }) end,
                  writes = function(c)
                      assert(c:set("/wc/5/a", "A"))
                      assert(c:set("/wc/5x", "outside"))
                      assert(c:set("/wc/5/b", 2))
                      assert(c:set("/wc/5/c/d", { deep = true }))
                      assert(c:delete("/wc/5/b"))
                  end },

                { "filters NOPUT", n = 3,
                  watch = function(c)
                      return c:watch("/wc/6/k", { filters = { "NOPUT" }, timeout = 3 })
                  end,
                  writes = function(c)
                      assert(c:set("/wc/6/k", 1)); assert(c:delete("/wc/6/k"))
                      assert(c:set("/wc/6/k", 2)); assert(c:delete("/wc/6/k"))
                  end },

                { "filters NODELETE", n = 3,
                  watch = function(c)
                      return c:watch("/wc/7/k", { filters = { "NODELETE" }, timeout = 3 })
                  end,
                  writes = function(c)
                      assert(c:set("/wc/7/k", 1)); assert(c:delete("/wc/7/k"))
                      assert(c:set("/wc/7/k", 2)); assert(c:delete("/wc/7/k"))
                  end },

                -- Replayed history: etcd sends the events found in the store
                -- for a start_revision in the past in one response or in
                -- several (batching depends on timing and size), so this
                -- compares the created ack and the flattened event list.
                { "start_revision replays history", events = 4,
                  before = function(c, s)
                      local res = assert(c:set("/wc/8/k", "a"))
                      s.rev8 = res.body.header.revision
                      assert(c:delete("/wc/8/k"))
                      assert(c:set("/wc/8/k", "b"))
                      assert(c:set("/wc/8/k", { c = 3 }))
                  end,
                  watch = function(c, s)
                      return c:watch("/wc/8/k", { start_revision = tonumber(s.rev8),
                                                  prev_kv = true, timeout = 3 })
                  end },

                { "start_revision replay, watchdir with NOPUT", events = 1,
                  before = function(c, s)
                      local res = assert(c:set("/wc/9/a", "a"))
                      s.rev9 = res.body.header.revision
                      assert(c:set("/wc/9/b", "b"))
                      assert(c:delete("/wc/9/a"))
                  end,
                  watch = function(c, s)
                      return c:watchdir("/wc/9/", { start_revision = tonumber(s.rev9),
                                                    filters = { "NOPUT" }, timeout = 3 })
                  end },

                { "watch_id 7 echoed", n = 2,
                  watch = function(c) return c:watch("/wc/10/k", { watch_id = 7, timeout = 3 }) end,
                  writes = function(c) assert(c:set("/wc/10/k", "v")) end },

                { "empty value PUT (raw)", n = 2,
                  watch = function(c, s) return raw(s):watch("/wc/11/k", { prev_kv = true, timeout = 3 }) end,
                  writes = function(c, s)
                      assert(raw(s):set("/wc/11/k", ""))
                      assert(raw(s):set("/wc/11/k", ""))
                  end },

                { "empty value PUT read by json", n = 2,
                  watch = function(c) return c:watch("/wc/12/k", { timeout = 3 }) end,
                  writes = function(c, s) assert(raw(s):set("/wc/12/k", "")) end },

                -- last: compacts both stores (etcdctl on the etcd_grpc store,
                -- /v3/kv/compaction on the gateway store)
                { "start_revision older than the compaction point", n = 2,
                  before = function(c, s)
                      local res = assert(c:set("/wc/14/k", "1"))
                      s.old14 = res.body.header.revision
                      assert(c:set("/wc/14/k", "2"))
                      res = assert(c:set("/wc/14/k", "3"))
                      s.cur14 = res.body.header.revision
                  end,
                  setup = function(g, w) C.compact(g, w, "cur14") end,
                  watch = function(c, s)
                      return c:watch("/wc/14/k", { start_revision = tonumber(s.old14), timeout = 3 })
                  end },
            }, { clean = "/wc/" })
        }
    }
--- response_body
ok created ack
ok PUT event, json table value
ok DELETE event (no value, type DELETE)
ok prev_kv on PUT and DELETE
ok watchdir over a prefix, several keys
ok filters NOPUT
ok filters NODELETE
ok start_revision replays history
ok start_revision replay, watchdir with NOPUT
ok watch_id 7 echoed
ok empty value PUT (raw)
ok empty value PUT read by json
ok start_revision older than the compaction point



=== TEST 2: read timeout gives nil, "timeout" on both sides
The gateway side's cosocket logs its read timeout at the error level.
--- config
    location = /t {
        content_by_lua_block {
            local C = require "conformance"
            C.watch_run({
                { "read timeout", n = 3,
                  watch = function(c) return c:watch("/wc/13/k", { timeout = 1 }) end,
                  writes = function(c) assert(c:set("/wc/13/k", "v")) end },
            }, { clean = "/wc/" })
        }
    }
--- response_body
ok read timeout
--- error_log
lua tcp socket read timed out
