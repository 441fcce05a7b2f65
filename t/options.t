# etcd_grpc.new(opts): lua-resty-etcd's defaults, validation messages and
# the client fields callers read and write.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

run_tests();

__DATA__

=== TEST 1: validation errors, word for word
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cases = {
                { "not a table", "x" },
                { "protocol v2", { protocol = "v2" } },
                { "fractional timeout", { timeout = 0.5 } },
                { "negative timeout", { timeout = -1 } },
                { "NaN timeout", { timeout = 0/0 } },
                { "huge timeout", { timeout = 1e300 } },
                { "string timeout", { timeout = "5" } },
                { "http_host number", { http_host = 1 } },
                { "ttl fraction", { ttl = 1.5 } },
                { "key_prefix", { key_prefix = 1 } },
                { "user", { user = 1 } },
                { "password", { password = {} } },
                { "unix_socket_proxy", { unix_socket_proxy = true } },
                { "unix_socket_proxy set", { unix_socket_proxy = "unix:/tmp/conf.sock" } },
                { "host with path", { http_host = "http://127.0.0.1:2379/v3" } },
                { "host without scheme", { http_host = "127.0.0.1:2379" } },
                { "host with underscore", { http_host = "http://my_host:2379" } },
                { "bad host in array", { http_host = { "http://a:1", "http://b:x" } } },
            }
            for _, c in ipairs(cases) do
                local cli, err = etcd.new(c[2])
                ngx.say(c[1], ": ", tostring(cli), " ", err)
            end
        }
    }
--- response_body
not a table: nil opts must be table
protocol v2: nil only support etcd v3 api
fractional timeout: nil opts.timeout must be unsigned integer
negative timeout: nil opts.timeout must be unsigned integer
NaN timeout: nil opts.timeout must be unsigned integer
huge timeout: nil opts.timeout must be unsigned integer
string timeout: nil opts.timeout must be unsigned integer
http_host number: nil opts.http_host must be string or string array
ttl fraction: nil opts.ttl must be integer
key_prefix: nil opts.key_prefix must be string
user: nil opts.user must be string or ignore
password: nil opts.password must be string or ignore
unix_socket_proxy: nil opts.unix_socket_proxy must be string or ignore
unix_socket_proxy set: nil opts.unix_socket_proxy is not supported: etcd_grpc speaks gRPC to the endpoints
host with path: nil invalid http host: http://127.0.0.1:2379/v3, err: not matched
host without scheme: nil invalid http host: 127.0.0.1:2379, err: not matched
host with underscore: nil invalid http host: http://my_host:2379, err: not matched
bad host in array: nil invalid http host: http://b:x, err: not matched



=== TEST 2: defaults are written back into opts; endpoints are parsed like lua-resty-etcd's
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local opts = { http_host = { "http://127.0.0.1:2379", "https://[::1]", "http://etcd-1.local:12379" } }
            local cli = assert(etcd.new(opts))
            ngx.say("opts: timeout ", opts.timeout, ", ttl ", opts.ttl, ", api_prefix ", opts.api_prefix,
                    ", serializer is a module: ", type(opts.serializer.serialize) == "function")
            for _, ep in ipairs(cli.endpoints) do
                ngx.say(ep.scheme, " ", ep.host, " ", ep.port, " (", type(ep.port), ") ",
                        ep.http_host, " ", ep.full_prefix)
            end
            ngx.say("key_prefix [", cli.key_prefix, "] timeout ", cli.timeout,
                    " is_cluster ", cli.is_cluster)
            local raw = assert(etcd.new({ serializer = "raw" }))
            local unknown = assert(etcd.new({ serializer = "no-such-serializer" }))
            ngx.say("raw serializer: ", raw.serializer == require "etcd_grpc.serializers.raw")
            ngx.say("unknown falls back to json: ", unknown.serializer == require "etcd_grpc.serializers.json")
            ngx.say("unknown options ignored: ", etcd.new({ etcd_prefix = "/x", anything = 1 }) ~= nil)
        }
    }
--- response_body
opts: timeout 5, ttl -1, api_prefix /v3, serializer is a module: true
http 127.0.0.1 2379 (string) http://127.0.0.1:2379 http://127.0.0.1:2379/v3
https [::1] 2379 (string) https://[::1]:2379 https://[::1]:2379/v3
http etcd-1.local 12379 (string) http://etcd-1.local:12379 http://etcd-1.local:12379/v3
key_prefix [] timeout 5 is_cluster true
raw serializer: true
unknown falls back to json: true
unknown options ignored: true



=== TEST 3: rewriting cli.endpoints after new() redirects later calls
--- config
    location = /t {
        content_by_lua_block {
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "http://127.0.0.1:1", serializer = "raw", timeout = 2 }))
            ngx.say("before: ", select(2, cli:get("/op3")))
            local good = assert(etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })).endpoints[1]
            local ep = cli.endpoints[1]
            ep.host, ep.port, ep.http_host, ep.full_prefix = good.host, good.port, good.http_host, good.full_prefix
            local res, err = cli:set("/op3", "redirected")
            ngx.say("after: ", res and res.status or err)
        }
    }
--- response_body
before: http://127.0.0.1:1: connection refused
after: 200



=== TEST 4: a custom serializer module by name
--- config
    location = /t {
        content_by_lua_block {
            package.loaded["etcd_grpc.serializers.upper"] = {
                serialize = function(v) return string.upper(v) end,
                deserialize = function(v) return "<" .. v .. ">" end,
            }
            local etcd = require "etcd_grpc"
            local cli = assert(etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST", serializer = "upper" }))
            assert(cli:set("/op4", "hello"))
            ngx.say(cli:get("/op4").body.kvs[1].value)
        }
    }
--- response_body
<HELLO>
