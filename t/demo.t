# `make demo` end to end: start examples/demo.sh (its own etcd and nginx
# with 2 workers), add a route through the admin API, see it served by both
# workers from their mirrors, see /status.json reflect it, stop it with
# SIGINT (Ctrl-C) and find nothing of it left running.
use v5.36;
use Test::More;
use Cwd ();
use File::Basename ();
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h setsid);
use Time::HiRes qw(sleep time);

my $root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
my $so = "$root/target/release/libetcd_grpc_core.so";
plan skip_all => "no release build ($so): run make build" unless -e $so;

sub free_port () {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0)
        or die "no free port: $!";
    return $s->sockport;
}

sub curl (@args) {
    my $out = qx{curl -s --max-time 5 @args};
    return $out;
}

my ($port, $up, $etcd) = (free_port(), free_port(), free_port());
$etcd = free_port() while $etcd + 10 == $port || $etcd + 10 == $up;
my $logfile = "/tmp/etcd-grpc-demo-test.$$.log";

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    setsid();
    open STDOUT, '>', $logfile or POSIX::_exit(126);
    open STDERR, '>&', \*STDOUT;
    $ENV{DEMO_PORT} = $port;
    $ENV{DEMO_UPSTREAM_PORT} = $up;
    $ENV{DEMO_ETCD_PORT} = $etcd;
    $ENV{NGINX_BIN} = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
    $ENV{NGINX_MODULES} = $ENV{TEST_NGINX_LOAD_MODULES} // '';
    exec 'bash', "$root/examples/demo.sh" or POSIX::_exit(127);
}
END { kill 'KILL', -$pid if $pid && kill 0, $pid; unlink $logfile if $logfile }

my $up_ok;
for (1 .. 200) {
    last if ($up_ok = curl("http://127.0.0.1:$port/status.json") =~ /"workers":\[\{/);
    sleep 0.1;
}
ok $up_ok, 'the demo answers /status.json' or diag `cat $logfile`;

my $put = curl(qq{-X PUT -d '{"uri": "/hello", "upstream": "127.0.0.1:$up"}'},
               "http://127.0.0.1:$port/admin/routes/hello");
like $put, qr/"revision":"\d+"/, 'PUT /admin/routes/hello writes the route';

# both workers serve it: nginx hands connections to either worker
my (%pids, $served);
for (1 .. 400) {
    my $r = curl('-i', "http://127.0.0.1:$port/hello");
    if ($r =~ /hello from the upstream: \/hello/ && $r =~ /X-Worker-Pid: (\d+)/i) {
        $pids{$1} = 1;
        $served++;
    }
    last if keys %pids >= 2;
    sleep 0.01;
}
is scalar(keys %pids), 2, 'the route is served by both workers' or diag "served $served";
like curl("http://127.0.0.1:$port/nope"), qr/no route/, 'an unknown uri gets 404';

my $status;
for (1 .. 50) {
    $status = curl("http://127.0.0.1:$port/status.json");
    my @keys = $status =~ /"prefix":"\\?\/demo\\?\/routes\\?\/"[^}]*?"keys":1\b/g;
    my @k2 = $status =~ /"keys":1,[^}]*"prefix":"\\?\/demo\\?\/routes\\?\/"/g;
    last if @keys + @k2 >= 2;
    sleep 0.2;
}
my $n = () = $status =~ /"keys":1\b/g;
is $n, 2, '/status.json shows the route in both workers\' mirrors' or diag $status;
like curl("http://127.0.0.1:$port/status"), qr/<h2>worker 1 .*mirrors/s, '/status is an HTML page';

kill 'INT', $pid;
my $t0 = time;
my $gone;
for (1 .. 100) {
    last if ($gone = waitpid($pid, WNOHANG) == $pid);
    sleep 0.1;
}
my $exited = time - $t0;
ok $gone, sprintf("SIGINT stops the demo (%.1f s)", $exited);
like `cat $logfile`, qr/demo: stopped/, 'it cleaned up';
my $left = `pgrep -s $pid`;
is $left, '', 'nothing of it is left running';
kill 'KILL', -$pid if $left;    # what the test started, by its session
$pid = undef;
my $bound = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => $port, ReuseAddr => 1);
ok $bound, 'its port is free again';

done_testing;
