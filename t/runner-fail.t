# Self-test: a failing block makes the run fail, a block that exceeds its
# `--- timeout` fails instead of hanging, and the output names the failing
# blocks and shows their error-log lines.
#
# Runs t/lib/fixtures/failing.tfix (not *.t, so `prove -r t/` skips it) in a
# child perl with its own port and server root, under a hard deadline.
use v5.36;

use Cwd ();
use File::Basename ();
use File::Temp ();
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);

my $root    = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
my $fixture = 't/lib/fixtures/failing.tfix';
my $limit   = 60;    # hard deadline for the child (normally ~6 s)
my $bound   = 30;    # what "does not hang" means here

my $tmp  = File::Temp::tempdir('runner-fail-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $port = free_port();
my $servroot = "$tmp/servroot";

my ($status, $elapsed, $output) = run_fixture();

ok(defined $status, "fixture finished within ${limit}s")
    or diag("child output so far:\n$output");
cmp_ok($elapsed, '<', $bound, "fixture finished within ${bound}s (took ${\ sprintf '%.1f', $elapsed}s)");
ok(defined $status && $status != 0, 'fixture exits non-zero')
    or diag("exit status: " . ($status // 'none'));

like($output, qr/^not ok \d+ - \S*failing\.tfix TEST 1: wrong expected body - response_body - response is expected$/m,
     'TEST 1 fails its response_body check');
like($output, qr/^ok \d+ - \S*failing\.tfix TEST 1: wrong expected body - status code ok$/m,
     'TEST 1 still passes its status check');
like($output, qr/^not ok \d+ - \S*failing\.tfix TEST 2: request exceeds its timeout - status code ok$/m,
     'TEST 2 fails its status check');
like($output, qr/TEST 2: request exceeds its timeout - client socket timed out after 1s/,
     'TEST 2 reports the client timeout');
like($output, qr/^ok \d+ - \S*failing\.tfix TEST 3: a passing block still runs after the failures - response_body - response is expected$/m,
     'TEST 3 runs and passes after the failures');

like($output, qr/FAILED block: \S*failing\.tfix TEST 1: wrong expected body\n/,
     'diagnostics name failing TEST 1');
like($output, qr/FAILED block: \S*failing\.tfix TEST 2: request exceeds its timeout\n/,
     'diagnostics name failing TEST 2');
like($output, qr/^#\s+\S+ \S+ \[warn\] .*fixture marker: block 1 says hello/m,
     'the error-log tail of TEST 1 is shown');
like($output, qr/^#\s+\S+ \S+ \[error\] .*fixture marker: block 2 about to sleep/m,
     'the error-log tail of TEST 2 is shown');
unlike($output, qr/FAILED block: [^\n]*TEST 3/, 'passing TEST 3 prints no failure diagnostics');
like($output, qr/^1\.\.7$/m, 'the fixture ran 3 + 2 + 2 assertions');

ok(!port_accepts($port), 'no nginx left listening on the fixture port');
my $pid = read_pid("$servroot/logs/nginx.pid");
ok(!$pid || !kill(0, $pid), 'no nginx left running from the fixture server root');

done_testing();

# Runs the fixture in a child perl: returns (exit status or undef if it had to
# be killed, elapsed seconds, combined stdout+stderr).
sub run_fixture () {
    my $out = "$tmp/output.txt";
    my %env = (
        TEST_NGINX_PORT        => $port,
        TEST_NGINX_SERVER_PORT => $port,
        TEST_NGINX_SERVER_ROOT => $servroot,
    );
    my $start = time;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        chdir $root or POSIX::_exit(126);
        delete @ENV{qw(TEST_NGINX_SERVROOT TEST_NGINX_CLIENT_PORT TEST_NGINX_USE_HUP
                       TEST_NGINX_NO_CLEAN TEST_NGINX_MASTER_PROCESS)};
        @ENV{keys %env} = values %env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec $^X, '-I', 't/lib/runner', $fixture }
        POSIX::_exit(127);
    }

    my $status;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) { $status = $? >> 8; last }
        if (time - $start > $limit) {
            kill TERM => $pid;    # lets the runner stop its nginx
            sleep 5;
            kill KILL => $pid;
            waitpid($pid, 0);
            last;
        }
        sleep 0.1;
    }
    my $elapsed = time - $start;
    open my $fh, '<', $out or die "cannot read $out: $!";
    my $text = do { local $/; <$fh> };
    return ($status, $elapsed, $text);
}

sub free_port () {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1) or die "no free port: $!";
    return $s->sockport;
}

sub port_accepts ($p) {
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                 Proto => 'tcp', Timeout => 1) ? 1 : 0;
}

sub read_pid ($file) {
    open my $fh, '<', $file or return undef;
    my $pid = <$fh> // return undef;
    return $pid =~ /^(\d+)/ ? $1 : undef;
}
