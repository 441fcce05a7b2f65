# Self-test of the runner's HUP mode: one master for the whole file, a HUP
# between blocks, and each block's config live before its request.
BEGIN { $ENV{TEST_NGINX_USE_HUP} = 1 }

use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

repeat_each(1);
# A reload sequence: each block checks what the previous generation left in
# the shared dict (generation 1, 2, 3) across one master.
no_shuffle();
master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: first config remembers the master pid in a shared dict
--- http_config
    lua_shared_dict hup 1m;
--- config
    location = /t {
        content_by_lua_block {
            local process = require "ngx.process"
            ngx.shared.hup:set("master", process.get_master_pid())
            ngx.shared.hup:set("generation", 1)
            ngx.say("config 1")
        }
    }
--- response_body
config 1



=== TEST 2: the reloaded config answers; same master; shared dict kept
--- http_config
    lua_shared_dict hup 1m;
--- config
    location = /t {
        content_by_lua_block {
            local process = require "ngx.process"
            local master = process.get_master_pid()
            ngx.say("config 2")
            ngx.say(ngx.shared.hup:get("master") == master and "same master" or "master changed")
            ngx.say("generation ", ngx.shared.hup:incr("generation", 1))
        }
    }
--- response_body
config 2
same master
generation 2



=== TEST 3: a changed http_config is live and the old workers are gone
--- http_config
    lua_shared_dict hup 1m;
    lua_shared_dict hup_extra 1m;
--- config
    location = /t {
        content_by_lua_block {
            local process = require "ngx.process"
            local master = process.get_master_pid()
            local f = assert(io.open("/proc/" .. master .. "/task/" .. master .. "/children"))
            local n = 0
            for _ in f:read("*a"):gmatch("%d+") do
                n = n + 1
            end
            f:close()
            ngx.say("config 3")
            ngx.say(ngx.shared.hup:get("master") == master and "same master" or "master changed")
            ngx.say("extra dict: ", ngx.shared.hup_extra ~= nil)
            ngx.say("children of master: ", n)
        }
    }
--- response_body
config 3
same master
extra dict: true
children of master: 2



=== TEST 4: lines logged while the reloaded workers start belong to the block
--- http_config
    lua_shared_dict hup 1m;
    init_worker_by_lua_block {
        ngx.log(ngx.WARN, "hup init_worker ", ngx.worker.id())
    }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("config 4, generation ", ngx.shared.hup:incr("generation", 1))
        }
    }
--- response_body
config 4, generation 3
--- error_log
hup init_worker 0
hup init_worker 1
--- no_error_log
[error]
