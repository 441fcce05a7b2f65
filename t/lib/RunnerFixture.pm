package RunnerFixture;

# Runs a fixture of the project's runner (t/lib/fixtures/*.tfix, which
# `prove -r t/` skips) in a child perl, for the runner's self-tests
# (t/runner-fail.t, t/runner-shuffle.t).  The child always uses the project's
# runner (-I t/lib/runner), whichever Test::Nginx runs the self-test itself.
#
#   my $f = RunnerFixture->new;           # own port and server root
#   my ($status, $elapsed, $output) = $f->run('t/lib/fixtures/x.tfix', %env);
#
# run() returns the exit status (undef if the child had to be killed after
# `limit` seconds, 60 by default), the elapsed seconds and the combined
# stdout+stderr.  %env is added to the child's environment; the runner's mode
# switches (HUP, NO_CLEAN, SHUFFLE_SEED, ...) are cleared unless given.
# $f->port_accepts and $f->nginx_pid check that nothing was left running.

use v5.36;

use Cwd ();
use File::Basename ();
use File::Temp ();
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $Root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../..');

sub new ($class, %opts) {
    my $tmp = File::Temp::tempdir('runner-fixture-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    return bless { tmp => $tmp, port => _free_port(), servroot => "$tmp/servroot",
                   limit => $opts{limit} // 60, runs => 0 }, $class;
}

sub port ($self) { $self->{port} }

sub run ($self, $fixture, %env) {
    my $out = "$self->{tmp}/output-" . $self->{runs}++ . '.txt';
    my $start = time;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        chdir $Root or POSIX::_exit(126);
        delete @ENV{qw(TEST_NGINX_SERVROOT TEST_NGINX_CLIENT_PORT TEST_NGINX_USE_HUP
                       TEST_NGINX_NO_CLEAN TEST_NGINX_MASTER_PROCESS TEST_NGINX_NO_SHUFFLE
                       TEST_NGINX_SHUFFLE_SEED TEST_NGINX_VERBOSE)};
        @ENV{qw(TEST_NGINX_PORT TEST_NGINX_SERVER_PORT)} = ($self->{port}) x 2;
        $ENV{TEST_NGINX_SERVER_ROOT} = $self->{servroot};
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
        if (time - $start > $self->{limit}) {
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

sub port_accepts ($self) {
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                 Proto => 'tcp', Timeout => 1) ? 1 : 0;
}

# The pid in the fixture's pid file, if any.
sub nginx_pid ($self) {
    open my $fh, '<', "$self->{servroot}/logs/nginx.pid" or return undef;
    my $pid = <$fh> // return undef;
    return $pid =~ /^(\d+)/ ? $1 : undef;
}

sub _free_port () {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1) or die "no free port: $!";
    return $s->sockport;
}

1;
