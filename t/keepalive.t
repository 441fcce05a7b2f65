# Dead connections are found by HTTP/2 keepalive pings (10 s apart, 5 s to
# answer, only while a stream is open: etcd's ping policy), and what follows
# is sound: with one endpoint the watch resumes once etcd is back, with
# several it moves to a live member. A frozen etcd (SIGSTOP) is the case
# only pings catch: its kernel keeps the TCP connection up and even accepts
# new ones, but nothing is ever answered.
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';
use EtcdGrpcTest;

workers(1);

# A three-member cluster for the failover block, besides the file's etcd.
my @members = start_cluster(3);
for my $i (1 .. 3) {
    $ENV{"TEST_NGINX_MEMBER_$i"} = "$members[$i - 1]{host} $members[$i - 1]{pid}";
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => join('', map { "env TEST_NGINX_MEMBER_$_;\n" } 1 .. 3)
                      . ($block->main_config // ''));
    $block->set_value(timeout => 90) unless defined $block->timeout;
});

run_tests();

__DATA__

=== TEST 1: one endpoint frozen under a live watcher: the dead connection is closed within 25 s, reopening does not pile up connections, and after the thaw the reader gets every write once, in order
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local pid, port = ngx.worker.pid(), $TEST_NGINX_ETCD_PORT
            local cli = t.client({ serializer = "raw" })
            local reader = assert(cli:watchdir("/ka1/", { timeout = 60 }))
            ngx.say("created: ", reader().result.created)
            -- no call was made: the watch stream's is the worker's only connection
            local before = t.local_ports(pid, port)
            ngx.say("connections: ", #before)

            local ok, res = t.frozen($TEST_NGINX_ETCD_PID, 70, function()
                local waited = t.wait_closed(pid, port, before[1], 25)
                ngx.log(ngx.WARN, "keepalive: connection closed ", tostring(waited), " s after SIGSTOP")
                -- frozen a while longer: the stream is reopened towards the
                -- frozen etcd, which accepts connections but never answers
                local most = 0
                for _ = 1, 60 do
                    most = math.max(most, t.established(pid, port))
                    ngx.sleep(0.25)
                end
                return { waited ~= nil, most }
            end)
            if not ok then
                return
            end
            ngx.say("dead connection closed within 25 s: ", res[1])
            ngx.say("connections while reopening towards the frozen etcd: at most ", res[2])

            local put = "$TEST_NGINX_ETCDCTL --endpoints=$TEST_NGINX_ETCD_HOST put /ka1/"
            for _, v in ipairs({ "1", "2", "3", "4", "5", "end" }) do
                os.execute(put .. v .. " " .. v .. " >/dev/null")
            end
            local vals, revs = {}, {}
            t.read_until(reader, "end", vals, revs)
            ngx.say("read after the thaw: ", table.concat(vals, ","))
            local consecutive = true
            for i = 2, #revs do
                consecutive = consecutive and revs[i] == revs[i - 1] + 1
            end
            ngx.say("revisions consecutive: ", consecutive)
            ngx.say("connections now: ", t.established(pid, port))
        }
    }
--- response_body
created: true
connections: 1
dead connection closed within 25 s: true
connections while reopening towards the frozen etcd: at most 1
read after the thaw: 1,2,3,4,5,end
revisions consecutive: true
connections now: 1



=== TEST 2: three members, the watcher's frozen: writes through another member, before and after the dead connection is found, reach the watcher within 25 s, in order, none lost
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local etcd = require "etcd_grpc"
            local a, b, c = t.member(1), t.member(2), t.member(3)
            local pid = ngx.worker.pid()
            -- listed C, A, B: init_count = 1 starts on A, and the next after A is B
            local cli = assert(etcd.new({ http_host = { c.host, a.host, b.host }, init_count = 1,
                                          serializer = "raw" }))
            local via_b = assert(etcd.new({ http_host = b.host, serializer = "raw", timeout = 3 }))
            local reader = assert(cli:watchdir("/ka2/", { timeout = 60 }))
            ngx.say("created: ", reader().result.created)
            ngx.say("connections to A: ", t.established(pid, a.port))

            -- setnx, retried: a write that landed although its answer was
            -- lost (A may have been the leader) is not made twice
            local function put(v)
                for _ = 1, 50 do
                    local res = via_b:setnx("/ka2/" .. v, v)
                    if res and res.status == 200 then return end
                    ngx.sleep(0.2)
                end
                error("cannot write " .. v .. " through B")
            end

            t.frozen(a.pid, 70, function()
                ngx.update_time()
                local t0 = ngx.now()
                local vals, revs = {}, {}
                -- written before the dead connection is found (15 s)
                for _, v in ipairs({ "1", "2", "3" }) do put(v) end
                t.read_until(reader, "3", vals, revs)
                ngx.update_time()
                local resumed = ngx.now() - t0
                ngx.log(ngx.WARN, "keepalive: watcher resumed ", resumed, " s after SIGSTOP")
                ngx.say("earlier writes reached the watcher within 25 s: ", resumed < 25)
                -- and after
                for _, v in ipairs({ "4", "5", "6", "end" }) do put(v) end
                t.read_until(reader, "end", vals, revs)
                ngx.say("read: ", table.concat(vals, ","))
                local increasing = true
                for i = 2, #revs do
                    increasing = increasing and revs[i] > revs[i - 1]
                end
                ngx.say("revisions increasing: ", increasing)
                -- to B: the watch stream of cli, the calls of via_b
                ngx.say("connections to A: ", t.established(pid, a.port),
                        ", to B: ", t.established(pid, b.port))
            end)
        }
    }
--- response_body
created: true
connections to A: 1
earlier writes reached the watcher within 25 s: true
read: 1,2,3,4,5,6,end
revisions increasing: true
connections to A: 0, to B: 2



=== TEST 3: three members, the one calls go to frozen: the calls time out until the dead connection is found, then all work again
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local etcd = require "etcd_grpc"
            local a, b, c = t.member(1), t.member(2), t.member(3)
            local pid = ngx.worker.pid()
            -- C first (frozen below), then B; init_count defaults to a random start
            local cli = assert(etcd.new({ http_host = { c.host, b.host, a.host }, init_count = 0,
                                          serializer = "raw", timeout = 3 }))
            assert(cli:set("/ka3/k", "v"))
            ngx.say("connections to C: ", t.established(pid, c.port))

            t.frozen(c.pid, 70, function()
                ngx.update_time()
                local t0 = ngx.now()
                local first, from_c, other
                while ngx.now() - t0 < 40 do
                    local res, gerr = cli:get("/ka3/k")
                    ngx.update_time()
                    if res then
                        first = ngx.now() - t0
                        break
                    end
                    if gerr:sub(1, #c.host + 2) == c.host .. ": " then
                        from_c = (from_c or 0) + 1
                    elseif gerr ~= "timeout" then
                        other = gerr
                    end
                end
                ngx.log(ngx.WARN, "keepalive: first get ", tostring(first), " s after SIGSTOP")
                ngx.say("a get succeeded within 30 s: ", first ~= nil and first < 30)
                -- only the call in flight when the connection is found dead
                -- fails otherwise than by its own timeout
                ngx.say("failures before it: timeouts and at most one error from C: ",
                        other == nil and (from_c or 0) <= 1)
                local later = 0
                for _ = 1, 10 do
                    local res = cli:get("/ka3/k")
                    if res and res.body.kvs[1].value == "v" then later = later + 1 end
                end
                ngx.say("gets after it: ", later, " of 10")
                ngx.say("connections to C: ", t.established(pid, c.port),
                        ", to B: ", t.established(pid, b.port))
            end)
        }
    }
--- response_body
connections to C: 1
a get succeeded within 30 s: true
failures before it: timeouts and at most one error from C: true
gets after it: 10 of 10
connections to C: 0, to B: 1



=== TEST 4: etcd's ping policy is kept: over 46 s (four ping intervals) neither the idle CRUD connection (no pings without a stream) nor the sync connection with an open watch (pings 10 s apart) is sent away with GOAWAY too_many_pings
--- config
    location = /t {
        content_by_lua_block {
            local t = require "etcd_grpc_test"
            local pid, port = ngx.worker.pid(), $TEST_NGINX_ETCD_PORT
            local cli = t.client({ serializer = "raw" })
            assert(cli:set("/ka4/k", "v0"))
            local reader = assert(cli:watch("/ka4/k", { timeout = 60 }))
            assert(reader().result.created)
            local before = t.local_ports(pid, port)
            table.sort(before)
            ngx.say("connections: ", #before)
            -- etcd (grpc-go) sends GOAWAY at its third unwelcome ping: on a
            -- connection without streams every ping after the first is
            -- one, on a stream's connection one sooner than 5 s after the
            -- last. Pinging the idle connection every 10 s would be sent
            -- away ~40 s in: 46 s leaves room for four intervals.
            ngx.sleep(46)
            local after = t.local_ports(pid, port)
            table.sort(after)
            ngx.say("same connections after 46 s: ", table.concat(before, ",") == table.concat(after, ","))
            assert(cli:set("/ka4/k", "v1"))
            ngx.say("watcher still gets events: ", reader().result.events[1].kv.value)
            ngx.say("get on the CRUD connection: ", cli:get("/ka4/k").body.kvs[1].value)
        }
    }
--- timeout: 80
--- response_body
connections: 2
same connections after 46 s: true
watcher still gets events: v1
get on the CRUD connection: v1
