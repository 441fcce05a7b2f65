# Clusters: a hung member is left on the per-call timeout, not after the
# ~15 s of HTTP/2 pings; leader changes lose and double no write; a full
# outage answers fast and heals at once; lua-resty-etcd's health_check.
# One three-member cluster serves every block (each leaves it whole).
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(2);

my @members = start_cluster(3);
for my $i (1 .. 3) {
    my $m = $members[$i - 1];
    $ENV{"TEST_NGINX_MEMBER_$i"} = "$m->{host} $m->{pid}";
    $ENV{"TEST_NGINX_RESTART_$i"} = $m->{restart};
}
$ENV{TEST_NGINX_CLUSTER} = join ' ', map { $_->{host} } @members;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => join('', map { "env TEST_NGINX_MEMBER_$_;\nenv TEST_NGINX_RESTART_$_;\n" } 1 .. 3)
                      . "env TEST_NGINX_CLUSTER;\n" . ($block->main_config // ''));
    $block->set_value(http_config => "    lua_shared_dict cl_ctl 1m;\n    lua_shared_dict cl_hc 1m;\n"
                      . ($block->http_config // ''));
    $block->set_value(timeout => 90) unless defined $block->timeout;
});

run_tests();

__DATA__

=== TEST 1: the used member frozen under 16 threads of gets (timeout 2): no read fails past 3 s, writes resume within 3 s
--- config
    location = /t {
        content_by_lua_block {
            local c = require "cluster_test"
            local cli = c.client({ timeout = 2 })
            assert(cli:set("/cl1/k", "v"))
            local used = c.used_member()
            ngx.say("one member used: ", used ~= nil)
            local stop, fails_end, writes_back = false, 0, nil
            local t0
            local threads = {}
            for i = 1, 16 do
                threads[i] = ngx.thread.spawn(function()
                    while not stop do
                        local res, err = cli:get("/cl1/k")
                        ngx.update_time()
                        if not res and t0 then
                            fails_end = math.max(fails_end, ngx.now() - t0)
                        end
                        ngx.sleep(0.01)
                    end
                end)
            end
            local writer = ngx.thread.spawn(function()
                while not stop do
                    local res = cli:set("/cl1/w", "x")
                    ngx.update_time()
                    if res and t0 and not writes_back then
                        writes_back = ngx.now() - t0
                    end
                    ngx.sleep(0.02)
                end
            end)
            ngx.sleep(0.5)
            c.frozen({ used }, 30, function()
                ngx.update_time()
                t0 = ngx.now()
                ngx.sleep(6)
            end)
            stop = true
            for i = 1, 16 do ngx.thread.wait(threads[i]) end
            ngx.thread.wait(writer)
            ngx.say("reads failing for at most 3 s: ", fails_end <= 3, c.note(fails_end))
            ngx.say("writes back within 3 s: ", writes_back ~= nil and writes_back <= 3, c.note(writes_back))
            ngx.say("moved off the frozen member: ", c.used_member() ~= used)
        }
    }
--- response_body
one member used: true
reads failing for at most 3 s: true
writes back within 3 s: true
moved off the frozen member: true
--- error_log eval
qr/cluster_test: /
