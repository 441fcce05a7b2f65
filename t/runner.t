# Self-test of the Test::Nginx runner in t/lib/runner and of EtcdGrpcTest.
# Plain ngx_lua only (no etcd_grpc module); loading EtcdGrpcTest also proves
# that it starts an etcd and exports $TEST_NGINX_ETCD_*.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

repeat_each(2);

# A file-local preprocessor using the block API: the custom section
# `--- expect_hello: NAME` becomes an expected response_body.
add_block_preprocessor(sub {
    my $block = shift;
    if (defined $block->expect_hello) {
        $block->set_value(response_body => "hello, " . $block->expect_hello . "\n");
    }
});

run_tests();

# For TEST 17: `eval` code sees this only as main::runner_t_helper().
sub runner_t_helper { "helper in main\n" }

__DATA__

=== TEST 1: response_body, with the helper's default request and no_error_log
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("hello")
        }
    }
--- response_body
hello



=== TEST 2: response_body_like is unanchored and matches with /s
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("first line")
            ngx.say("answer: ", 6 * 7)
        }
    }
--- request
GET /t
--- response_body_like chomp
^first line
answer: \d+$



=== TEST 3: error_code and an inline response_body_like
--- config
    location = /t {
        return 404;
    }
--- error_code: 404
--- response_body_like: 404 Not Found



=== TEST 4: more_headers are sent (comment lines skipped), Host defaults to localhost
--- config
    location = /t {
        content_by_lua_block {
            local h = ngx.req.get_headers()
            ngx.say("x-foo: ", h["x-foo"])
            ngx.say("x-bar: ", h["x-bar"])
            ngx.say("host: ", h["host"])
        }
    }
--- more_headers
X-Foo: foo value
# not a header
X-Bar: bar
--- response_body
x-foo: foo value
x-bar: bar
host: localhost



=== TEST 5: POST with a body on the lines after the request line
--- config
    location = /t {
        content_by_lua_block {
            ngx.req.read_body()
            ngx.say(ngx.req.get_method(), " ", ngx.var.http_content_length,
                    " [", ngx.req.get_body_data(), "]")
        }
    }
--- request
POST /t
hello world
--- response_body
POST 11 [hello world]



=== TEST 6: error_log substrings and no_error_log eval with an array of string and qr//
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.ERR, "runner-t marker ", 40 + 2)
            ngx.say("logged")
        }
    }
--- response_body
logged
--- error_log
runner-t marker 42
content_by_lua
--- no_error_log eval
[qr/\[alert\]/, "[emerg]", "runner-t marker 43"]



=== TEST 7: error_log eval with a qr// value
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "runner-t warn ", ngx.var.uri)
            ngx.say("ok")
        }
    }
--- response_body
ok
--- error_log eval
qr{\[warn\] .*runner-t warn /t}
--- no_error_log
[error]



=== TEST 8: $TEST_NGINX_ETCD_* substitution: GET /health from etcd over a cosocket
--- config
    location = /t {
        content_by_lua_block {
            local sock = ngx.socket.tcp()
            sock:settimeout(2000)
            local ok, err = sock:connect("127.0.0.1", $TEST_NGINX_ETCD_PORT)
            if not ok then
                ngx.say("failed to connect: ", err)
                return
            end
            sock:send("GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            local resp, err = sock:receive("*a")
            if not resp then
                ngx.say("failed to receive: ", err)
                return
            end
            ngx.say("status: ", resp:match("^HTTP/%d%.%d (%d+)"))
            ngx.say("body: ", resp:match("\r\n\r\n(.*)$"))
            local host = "$TEST_NGINX_ETCD_HOST"
            ngx.say("host: ", host == "http://127.0.0.1:$TEST_NGINX_ETCD_PORT" and "ok" or host)
        }
    }
--- response_body_like chomp
^status: 200
body: \{"health":"true"[^\n]*\}
host: ok$



=== TEST 9: main_config and http_config end up in the right contexts
--- main_config
    env RUNNER_T_MAIN=from-main-config;
--- http_config
    lua_shared_dict runner_t 1m;
    init_by_lua_block {
        ngx.shared.runner_t:set("init", "from-http-config")
    }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(os.getenv("RUNNER_T_MAIN"))
            ngx.say(ngx.shared.runner_t:get("init"))
            ngx.say(package.path:find("$TEST_NGINX_ROOT/lua/?.lua;", 1, true)
                    and "lua path ok" or package.path)
        }
    }
--- response_body
from-main-config
from-http-config
lua path ok



=== TEST 10: a chunked response is decoded
--- config
    location = /t {
        content_by_lua_block {
            for i = 1, 3 do
                ngx.say("chunk ", i)
                ngx.flush(true)
            end
        }
    }
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
chunk 1
chunk 2
chunk 3



=== TEST 11: wait lets a timer log before the error log is checked
--- config
    location = /t {
        content_by_lua_block {
            ngx.timer.at(0.5, function()
                ngx.log(ngx.WARN, "runner-t timer fired")
            end)
            ngx.say("timer scheduled")
        }
    }
--- wait: 0.8
--- response_body
timer scheduled
--- error_log
runner-t timer fired
--- no_error_log
[error]



=== TEST 12: eval filter in request and response_body
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(string.rep("x", tonumber(ngx.var.arg_n)))
        }
    }
--- request eval
"GET /t?n=" . (1 + 2)
--- response_body eval
"x" x 3 . "\n"



=== TEST 13: chomp filter
--- config
    location = /t {
        content_by_lua_block {
            ngx.print("no newline")
        }
    }
--- response_body chomp
no newline



=== TEST 14: a custom section turned into response_body by a preprocessor
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("hello, preprocessor")
        }
    }
--- expect_hello: preprocessor



=== TEST 15: $TEST_NGINX_SERVER_PORT and $TEST_NGINX_SERVER_ROOT
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(ngx.var.server_port == "$TEST_NGINX_SERVER_PORT" and "port ok" or ngx.var.server_port)
            ngx.say(ngx.config.prefix() == "$TEST_NGINX_SERVER_ROOT/" and "prefix ok" or ngx.config.prefix())
        }
    }
--- response_body
port ok
prefix ok



=== TEST 16: a slow response within its timeout passes
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(0.3)
            ngx.say("slow but fine")
        }
    }
--- timeout: 3
--- response_body
slow but fine



=== TEST 17: eval sections run in package Test::Base::Filter, as upstream; main:: helpers are reachable qualified
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("helper in main")
            ngx.say("Test::Base::Filter")
        }
    }
--- response_body eval
main::runner_t_helper() . __PACKAGE__ . "\n"
