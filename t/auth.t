# user/password auth: the token on every call and stream, reactive refresh
# on etcd's token refusals, one Authenticate at a time. Two etcds with auth
# enabled (simple tokens): one with the default token TTL, restarted by some
# blocks, one with --auth-token-ttl 2. A restarted etcd replays the raft
# log after its last snapshot, Authenticate entries included, and so would
# recreate the tokens they issued: --snapshot-count 1 snapshots after every
# entry, so that a restart really forgets every token.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

my $auth = start_etcd(args => ['--snapshot-count', '1']);
my $ttl  = start_etcd(args => ['--auth-token-ttl', '2']);
for my $e ($auth, $ttl) {
    enable_auth($e, 'r00t-Secret-pw');
    etcdctl($e, 'role', 'add', 'limited');
    etcdctl($e, 'role', 'grant-permission', 'limited', '--prefix=true', 'readwrite', '/lim/');
    etcdctl($e, 'user', 'add', 'limited:L1mited-Secret-pw');
    etcdctl($e, 'user', 'grant-role', 'limited', 'limited');
}
$ENV{TEST_NGINX_AUTH_HOST}    = $auth->{host};
$ENV{TEST_NGINX_AUTH_RESTART} = $auth->{restart};
$ENV{TEST_NGINX_TTL_HOST}     = $ttl->{host};

workers(1);
run_tests();

__DATA__

=== TEST 1: root reads and writes anywhere; calls carry the token (one Authenticate)
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST", user = "root",
                                          password = "r00t-Secret-pw", serializer = "raw" }))
            for i = 1, 3 do
                local res, err = cli:set("/au1/k" .. i, "v" .. i)
                ngx.say(res and res.status or err)
            end
            local res, err = cli:readdir("/au1/")
            ngx.say(res and #res.body.kvs or err)
            ngx.say("authenticates: ", etcd.stats().authenticates)
        }
    }
--- response_body
200
200
200
3
authenticates: 1



=== TEST 2: a limited user owns its prefix and gets the gateway's 403 elsewhere; no credentials: etcd's 400
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local dump = require("etcd_grpc_test").dump
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST", user = "limited",
                                          password = "L1mited-Secret-pw", serializer = "raw" }))
            local res, err = cli:set("/lim/au2", "mine")
            ngx.say("own: ", res and res.status or err)
            res, err = cli:get("/lim/au2")
            ngx.say("read own: ", res and res.body.kvs[1].value or err)
            res, err = cli:set("/au2/other", "x")
            ngx.say("other: ", res and (res.status .. " " .. dump(res.body)) or err)
            local anon = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST" }))
            res, err = anon:get("/lim/au2")
            ngx.say("anonymous: ", res and (res.status .. " " .. res.body.error) or err)
        }
    }
--- response_body
own: 200
read own: mine
other: 403 {code=7,error=etcdserver: permission denied,message=etcdserver: permission denied}
anonymous: 400 etcdserver: user name is empty



=== TEST 3: a wrong password: the contract's error, one WARN with the endpoint and etcd's reason
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST", user = "root",
                                          password = "Wr0ng-Secret-pw" }))
            local res, err = cli:get("/au3/k")
            ngx.say(res and "unexpected success" or err)
            local reader, werr = cli:watch("/au3/k", { timeout = 5 })
            local chunk, rerr = reader()
            ngx.say(chunk and "unexpected chunk" or rerr)
        }
    }
--- response_body
authenticate refresh token fail
authenticate refresh token fail
--- grep_error_log eval
qr/authenticate as user "root" on http:\/\/127.0.0.1:\d+ failed: etcdserver: authentication failed, invalid user ID or password/
--- grep_error_log_out eval
[qr/^(authenticate as user "root" on http:\/\/127.0.0.1:\d+ failed: etcdserver: authentication failed, invalid user ID or password\n){1,2}$/]
--- no_error_log
Wr0ng-Secret-pw
[error]



=== TEST 4: etcd restarted (it forgets its simple tokens): the next calls succeed without an error, one refresh
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST", user = "root",
                                          password = "r00t-Secret-pw", serializer = "raw" }))
            ngx.say(cli:set("/au4/k", "before").status)
            assert(os.execute("$TEST_NGINX_AUTH_RESTART 0.2 >/dev/null 2>&1"))
            for i = 1, 3 do
                local res, err = cli:get("/au4/k")
                ngx.say(res and res.body.kvs[1].value or err)
            end
            ngx.say("authenticates: ", etcd.stats().authenticates)
        }
    }
--- response_body
200
before
before
before
authenticates: 2
--- timeout: 30



=== TEST 5: 200 concurrent calls refused for the same stale token cause exactly one Authenticate
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST", user = "root",
                                          password = "r00t-Secret-pw", serializer = "raw" }))
            assert(cli:set("/au5/k", "v"))
            local before = etcd.stats().authenticates
            assert(os.execute("$TEST_NGINX_AUTH_RESTART 0.2 >/dev/null 2>&1"))
            local threads = {}
            for i = 1, 200 do
                threads[i] = ngx.thread.spawn(function()
                    local res, err = cli:get("/au5/k", { timeout = 20 })
                    return res and res.body.kvs and res.body.kvs[1].value == "v" or (err or res.status)
                end)
            end
            local ok, errs = 0, {}
            for i = 1, 200 do
                local _, r = ngx.thread.wait(threads[i])
                if r == true then ok = ok + 1 else errs[tostring(r)] = true end
            end
            ngx.say("succeeded: ", ok)
            for e in pairs(errs) do ngx.say("error: ", e) end
            ngx.say("authenticates during the refresh: ", etcd.stats().authenticates - before)
        }
    }
--- response_body
succeeded: 200
authenticates during the refresh: 1
--- timeout: 40



=== TEST 6: --auth-token-ttl 2: calls keep succeeding across token expiries, a watcher added late is created
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_TTL_HOST", user = "root",
                                          password = "r00t-Secret-pw", serializer = "raw" }))
            local first = assert(cli:watch("/au6/a", { timeout = 10 }))
            ngx.say("first created: ", first().result.created)
            for i = 1, 3 do
                ngx.sleep(3.5)
                local res, err = cli:set("/au6/k", "v" .. i)
                ngx.say("set ", i, ": ", res and res.status or err)
            end
            -- the Watch stream still carries the first, long expired token
            local late = assert(cli:watch("/au6/b", { timeout = 10 }))
            local c = late()
            ngx.say("late created: ", c and c.result.created, ", canceled: ", c and c.result.canceled)
            assert(cli:set("/au6/a", "A"))
            assert(cli:set("/au6/b", "B"))
            local ea, eb = first(), late()
            ngx.say("events: ", ea and ea.result.events[1].kv.value, " ", eb and eb.result.events[1].kv.value)
            ngx.say("refreshed: ", etcd.stats().authenticates >= 4)
        }
    }
--- response_body
first created: true
set 1: 200
set 2: 200
set 3: 200
late created: true, canceled: nil
events: A B
refreshed: true
--- timeout: 40



=== TEST 7: a watch under auth survives an etcd restart: every event once, in order
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local etcd = require "etcd_grpc"
            local opts = { http_host = "$TEST_NGINX_AUTH_HOST", user = "root",
                           password = "r00t-Secret-pw", serializer = "raw", timeout = 10 }
            local cli = assert(etcd.new(opts))
            local reader = assert(cli:watchdir("/au7/", { timeout = 15 }))
            assert(reader().result.created)
            for i = 1, 5 do assert(cli:set("/au7/k", tostring(i))) end
            assert(os.execute("$TEST_NGINX_AUTH_RESTART 0.5 >/dev/null 2>&1"))
            for i = 6, 10 do
                local res, err = cli:set("/au7/k", tostring(i))
                if not res or res.status ~= 200 then
                    ngx.say("failed to set: ", err or res.status)
                end
            end
            local vals, revs = {}, {}
            t.read_until(reader, "10", vals, revs)
            ngx.say(table.concat(vals, " "))
        }
    }
--- response_body
1 2 3 4 5 6 7 8 9 10
--- timeout: 40



=== TEST 8: at debug level no error-log line holds the password or a token; extra_headers cannot replace the token
--- log_level: debug
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST", user = "root",
                                          password = "r00t-Secret-pw", serializer = "raw",
                                          extra_headers = { ["Grpc-Metadata-token"] = "forged" } }))
            local res, err = cli:set("/au8/k", "v")
            ngx.say(res and res.status or err)
            local reader = assert(cli:watch("/au8/k", { timeout = 5 }))
            ngx.say(reader().result.created)
            local bad = assert(etcd.new({ http_host = "$TEST_NGINX_AUTH_HOST", user = "root",
                                          password = "Wr0ng-Secret-pw" }))
            ngx.say(select(2, bad:get("/au8/k")))
        }
    }
--- response_body
200
true
authenticate refresh token fail
--- no_error_log eval
[qr/r00t-Secret-pw/, qr/Wr0ng-Secret-pw/, qr/\b[a-zA-Z]{16}\.\d+\b/, qr/\[error\]/]
