# TLS, mTLS, SNI and certificate identity. Certificates are made with
# openssl when the file loads (in temporary dirs, removed at END); two etcds
# serve them: one on https:// only, one with --client-cert-auth and auth
# enabled, whose server certificate has only the serverAuth key usage.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

my $ca     = make_ca('etcd-grpc-test-ca');
my $other  = make_ca('other-ca');
my $server = make_cert($ca, 'etcd-server', sans => 'IP:127.0.0.1,DNS:etcd.test', eku => 'serverAuth');
my %client = map { $_ => make_cert($ca, $_, eku => 'clientAuth') } qw(root alice bob);
my $stranger = make_cert($other, 'root', eku => 'clientAuth');

my $tls  = start_etcd(tls => $server);
my $mtls = start_etcd(tls => $server, client_ca => $ca, client => $client{root});
enable_auth($mtls, 'rootpw');
for my $u (qw(alice bob)) {
    etcdctl($mtls, 'role', 'add', $u);
    etcdctl($mtls, 'role', 'grant-permission', $u, '--prefix=true', 'readwrite', "/$u/");
    etcdctl($mtls, 'user', 'add', "$u:${u}pw");
    etcdctl($mtls, 'user', 'grant-role', $u, $u);
}

$ENV{TEST_NGINX_TLS_HOST}  = $tls->{host};
$ENV{TEST_NGINX_TLS_PORT}  = $tls->{port};
$ENV{TEST_NGINX_MTLS_HOST} = $mtls->{host};
$ENV{TEST_NGINX_CA}        = $ca->{cert};
$ENV{TEST_NGINX_OTHER_CA}  = $other->{cert};
for my $u (keys %client) {
    $ENV{"TEST_NGINX_\U${u}\E_CERT"} = $client{$u}{cert};
    $ENV{"TEST_NGINX_\U${u}\E_KEY"}  = $client{$u}{key};
}
$ENV{TEST_NGINX_STRANGER_CERT} = $stranger->{cert};
$ENV{TEST_NGINX_STRANGER_KEY}  = $stranger->{key};

workers(1);
# TLS handshakes on a loaded 2-core machine: more than the default 3 s per block
timeout(15);
run_tests();

__DATA__

=== TEST 1: verified with trusted_ca: set and get over https
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_TLS_HOST",
                                          trusted_ca = "$TEST_NGINX_CA", serializer = "raw" }))
            local res, err = cli:set("/tls1/k", "v1")
            if not res then
                ngx.say("failed to set: ", err)
                return
            end
            res, err = cli:get("/tls1/k")
            if not res then
                ngx.say("failed to get: ", err)
                return
            end
            ngx.say(res.status, " ", res.body.kvs[1].value)
            ngx.say("handshakes: ", etcd.stats().tls_handshakes)
        }
    }
--- response_body
200 v1
handshakes: 1



=== TEST 2: a CA that did not sign the server's certificate, and the system roots, both fail clearly
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            for _, ca in ipairs({ "$TEST_NGINX_OTHER_CA", false }) do
                local cli = assert(etcd.new({ http_host = "$TEST_NGINX_TLS_HOST",
                                              trusted_ca = ca or nil }))
                local res, err = cli:get("/tls2/k")
                ngx.say(res and "unexpected success" or (err:gsub(":%d+:", ":PORT:")))
            end
        }
    }
--- response_body
https://127.0.0.1:PORT: unable to get local issuer certificate
https://127.0.0.1:PORT: unable to get local issuer certificate



=== TEST 3: ssl_verify = false connects without any CA, with one WARN per connection config
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local a = assert(etcd.new({ http_host = "$TEST_NGINX_TLS_HOST", ssl_verify = false }))
            local b = assert(etcd.new({ http_host = "$TEST_NGINX_TLS_HOST", ssl_verify = false }))
            for i, cli in ipairs({ a, b, a }) do
                local res, err = cli:set("/tls3/k" .. i, "v")
                ngx.say(res and res.status or err)
            end
        }
    }
--- response_body
200
200
200
--- grep_error_log eval
qr/ssl_verify is false for https:\/\/127.0.0.1:\d+/
--- grep_error_log_out eval
["ssl_verify is false for https://127.0.0.1:$ENV{TEST_NGINX_TLS_PORT}\n"]



=== TEST 4: sni that the certificate names is verified; one it does not name is a host mismatch
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            for _, sni in ipairs({ "etcd.test", "other.test" }) do
                local cli = assert(etcd.new({ http_host = "$TEST_NGINX_TLS_HOST",
                                              trusted_ca = "$TEST_NGINX_CA", sni = sni }))
                local res, err = cli:set("/tls4/k", sni)
                ngx.say(sni, ": ", res and res.status or (err:gsub(":%d+:", ":PORT:")))
            end
        }
    }
--- response_body
etcd.test: 200
other.test: https://127.0.0.1:PORT: certificate host mismatch



=== TEST 5: an IP literal is verified against the IP SANs; a name not in the SANs is a mismatch
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            for _, host in ipairs({ "https://127.0.0.1:$TEST_NGINX_TLS_PORT",
                                    "https://localhost:$TEST_NGINX_TLS_PORT" }) do
                local cli = assert(etcd.new({ http_host = host, trusted_ca = "$TEST_NGINX_CA" }))
                local res, err = cli:get("/tls5/k")
                ngx.say(res and res.status or (err:gsub(":%d+:", ":PORT:")))
            end
        }
    }
--- response_body
200
https://localhost:PORT: certificate host mismatch



=== TEST 6: unusable TLS options make new() fail, naming the option (and the file)
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local host = "$TEST_NGINX_TLS_HOST"
            local f = io.open("$TEST_NGINX_ROOT_CERT")
            local pem = f:read("*a")
            f:close()
            local cases = {
                { trusted_ca = "/nonexistent/ca.pem" },
                { trusted_ca = "$TEST_NGINX_ROOT_KEY" },
                { ssl_cert_path = "$TEST_NGINX_ROOT_CERT" },
                { ssl_key = "x" },
                { ssl_cert = pem, ssl_cert_path = "$TEST_NGINX_ROOT_CERT", ssl_key = "x" },
                { ssl_cert_path = "$TEST_NGINX_ROOT_CERT", ssl_key_path = "/nonexistent/k.pem" },
                { ssl_cert_path = "$TEST_NGINX_ROOT_CERT", ssl_key_path = "$TEST_NGINX_ROOT_CERT" },
                { ssl_cert_path = "$TEST_NGINX_ROOT_CERT", ssl_key_path = "$TEST_NGINX_ALICE_KEY" },
                { sni = 5 },
                { ssl_verify = "no" },
            }
            for _, opts in ipairs(cases) do
                opts.http_host = host
                local cli, err = etcd.new(opts)
                ngx.say(cli and "accepted" or err)
            end
        }
    }
--- response_body
trusted_ca: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)
trusted_ca: no certificate found
ssl_cert_path: a client certificate needs its key (ssl_key_path or ssl_key)
ssl_key: a client key needs its certificate (ssl_cert_path or ssl_cert)
cannot specify both 'ssl_cert' and 'ssl_cert_path'
ssl_key_path: cannot read /nonexistent/k.pem: No such file or directory (os error 2)
ssl_key: no usable private key: no items found
ssl_key: the key does not belong to the certificate
opts.sni must be string
opts.ssl_verify must be boolean



=== TEST 7: mTLS against --client-cert-auth (server certificate with serverAuth only): by path and by PEM contents
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local function slurp(p)
                local f = io.open(p)
                local s = f:read("*a")
                f:close()
                return s
            end
            local forms = {
                { ssl_cert_path = "$TEST_NGINX_ROOT_CERT", ssl_key_path = "$TEST_NGINX_ROOT_KEY" },
                { ssl_cert = slurp("$TEST_NGINX_ROOT_CERT"), ssl_key = slurp("$TEST_NGINX_ROOT_KEY") },
            }
            for i, opts in ipairs(forms) do
                opts.http_host = "$TEST_NGINX_MTLS_HOST"
                opts.trusted_ca = "$TEST_NGINX_CA"
                opts.serializer = "raw"
                local cli = assert(etcd.new(opts))
                local res, err = cli:set("/tls7/k", "v" .. i)
                if res then
                    res, err = cli:get("/tls7/k")
                end
                ngx.say(res and res.body.kvs[1].value or ("failed: " .. err))
            end
        }
    }
--- response_body
v1
v2



=== TEST 8: mTLS: no client certificate, and one from another CA, fail with clear errors
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local forms = {
                {},
                { ssl_cert_path = "$TEST_NGINX_STRANGER_CERT", ssl_key_path = "$TEST_NGINX_STRANGER_KEY" },
            }
            for _, opts in ipairs(forms) do
                opts.http_host = "$TEST_NGINX_MTLS_HOST"
                opts.trusted_ca = "$TEST_NGINX_CA"
                local cli = assert(etcd.new(opts))
                local res, err = cli:get("/tls8/k")
                ngx.say(res and "unexpected success" or (err:gsub(":%d+:", ":PORT:")))
            end
        }
    }
--- response_body
https://127.0.0.1:PORT: handshake failed: the server requires a client certificate (set ssl_cert_path and ssl_key_path)
https://127.0.0.1:PORT: handshake failed: bad certificate (the server refused the client certificate)



=== TEST 9: certificate identity reaches RBAC: CN=alice and CN=bob each own their prefix, 403 on the other's
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local dump = require("etcd_grpc_test").dump
            local who = {
                alice = { "$TEST_NGINX_ALICE_CERT", "$TEST_NGINX_ALICE_KEY" },
                bob = { "$TEST_NGINX_BOB_CERT", "$TEST_NGINX_BOB_KEY" },
            }
            for _, name in ipairs({ "alice", "bob" }) do
                local cli = assert(etcd.new({ http_host = "$TEST_NGINX_MTLS_HOST",
                                              trusted_ca = "$TEST_NGINX_CA",
                                              ssl_cert_path = who[name][1],
                                              ssl_key_path = who[name][2],
                                              serializer = "raw" }))
                local other = name == "alice" and "bob" or "alice"
                local res, err = cli:set("/" .. name .. "/tls9", name)
                ngx.say(name, " writes own: ", res and res.status or err)
                res, err = cli:get("/" .. name .. "/tls9")
                ngx.say(name, " reads own: ", res and res.body.kvs[1].value or err)
                res, err = cli:set("/" .. other .. "/tls9", name)
                ngx.say(name, " writes other: ", res and res.status .. " " .. dump(res.body) or err)
                res, err = cli:get("/" .. other .. "/tls9")
                ngx.say(name, " reads other: ", res and res.status or err)
            end
        }
    }
--- response_body
alice writes own: 200
alice reads own: alice
alice writes other: 403 {code=7,error=etcdserver: permission denied,message=etcdserver: permission denied}
alice reads other: 403
bob writes own: 200
bob reads own: bob
bob writes other: 403 {code=7,error=etcdserver: permission denied,message=etcdserver: permission denied}
bob reads other: 403



=== TEST 10: over one TLS connection: a 16 MiB readdir, then 1,000 concurrent gets with 300 live watchers; at most 2 connections
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_TLS_HOST", trusted_ca = "$TEST_NGINX_CA",
                                          serializer = "raw", timeout = 60 }))
            local chunk = string.rep("0123456789abcdef", 65536)     -- 1 MiB
            for i = 1, 16 do
                local res, err = cli:set(string.format("/tls10/big/%02d", i), chunk)
                if not res or res.status ~= 200 then
                    ngx.say("failed to set: ", err or res.status)
                    return
                end
            end
            local res, err = cli:readdir("/tls10/big/")
            if not res then
                ngx.say("failed to readdir: ", err)
                return
            end
            local total = 0
            for _, kv in ipairs(res.body.kvs) do
                total = total + #kv.value
            end
            ngx.say("readdir bytes: ", total)

            local readers = {}
            for i = 1, 300 do
                readers[i] = assert(cli:watch("/tls10/w/" .. i, { timeout = 30 }))
                assert(readers[i]().result.created)
            end
            assert(cli:set("/tls10/k", "v"))
            local threads = {}
            for i = 1, 1000 do
                threads[i] = ngx.thread.spawn(function()
                    local r, e = cli:get("/tls10/k", { timeout = 30 })
                    return r and r.body.kvs[1].value == "v" or e
                end)
            end
            local ok, errs = 0, {}
            for i = 1, 1000 do
                local _, r = ngx.thread.wait(threads[i])
                if r == true then ok = ok + 1 else errs[tostring(r)] = true end
            end
            ngx.say("gets: ", ok)
            for e in pairs(errs) do ngx.say("error: ", e) end
            assert(cli:set("/tls10/w/300", "last"))
            local ev = readers[300]()
            ngx.say("watcher 300: ", ev and ev.result.events[1].kv.value)
            local s = etcd.stats()
            ngx.say("watchers: ", s.watchers)
            local n = t.established(ngx.worker.pid(), $TEST_NGINX_TLS_PORT)
            ngx.say("connections <= 2: ", n <= 2, ", handshakes == connections: ", s.tls_handshakes == n)
        }
    }
--- response_body
readdir bytes: 16777216
gets: 1000
watcher 300: last
watchers: 300
connections <= 2: true, handshakes == connections: true
--- timeout: 120
