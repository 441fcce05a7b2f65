package Test::Nginx::Socket::Lua;

# A small, self-contained runner for the Test::Nginx `.t` format.
#
# Upstream openresty/test-nginx (and its CPAN dependencies Test::Base, Spiffy,
# Test::LongString, ...) is not available to this project, so this file takes
# its place when `.t` files are run with
#
#     prove -I t/lib/runner -r t/
#
# It uses core Perl only.  The exported names, section names, filters, test
# names and environment variables follow upstream Test::Nginx::Socket(::Lua),
# so the same `.t` files also run unchanged under upstream.  The POD after
# __END__ lists exactly what is supported and where this runner differs.

use v5.36;

use Test::More;
use Carp ();
use Cwd ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Select ();
use IO::Socket::INET ();
use List::Util ();
use MIME::Base64 ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our $VERSION = '0.01';

# ------------------------------------------------------------------ settings

our $RepeatEach           = 1;
our $Workers              = 1;
our $WorkerConnections    = 1024;
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $NoRootLocation       = 0;
our $NoLongString         = 0;       # accepted; failures always use is()
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;    # as upstream
our $ShuffleSeed          = $ENV{TEST_NGINX_SHUFFLE_SEED};      # this runner only
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $UseHup               = $ENV{TEST_NGINX_USE_HUP};
our $NoClean              = $ENV{TEST_NGINX_NO_CLEAN};
our $Verbose              = $ENV{TEST_NGINX_VERBOSE};
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES};
our $ServerAddr           = '127.0.0.1';
our $ServerName           = 'localhost';
our $ServerPort           = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient  = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || _default_nginx_binary();
our $ServRoot             = File::Spec->rel2abs(
    $ENV{TEST_NGINX_SERVROOT} || $ENV{TEST_NGINX_SERVER_ROOT} || 't/servroot');
our $ConfigPreamble       = '';
our @EnvToNginx;
our @BlockPreprocessors;
our @CleanupHandlers;

our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $PidFile    = "$LogDir/nginx.pid";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
my  $StderrFile = "$LogDir/nginx.stderr";

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;    # like upstream

# Bounds on every wait, so that no block can hang the run.
my $StartTimeout  = 10;    # launcher exit + listening port accepting
my $StopTimeout   = 3;     # grace after QUIT before SIGKILL (upstream: 3)
my $ReloadTimeout = 10;    # HUP: new config live; old workers gone
my $LogSettle     = 0.05;  # lets log-phase lines reach error.log
my $PortFreeTimeout = 30;  # the listening port is free again (upstream: 30)

# ------------------------------------------------------------------- state

my $OwnerPid = $$;         # END and signal cleanup only in this process
my $Blocks;                # parsed blocks, cached
my $FirstBlock = 1;
my $ErrLogPos  = 0;        # where the current repetition's log slice starts
my $ConfigVersion = '';    # HUP mode: served at /ver by the new config
my $UsedSeed;              # the shuffle's seed, if blocks were shuffled
my $StartedNginx;          # this process started an nginx (see _cleanup)
my $NginxVersion;          # canonical, e.g. 1.022001, for skip_nginx
our $FilterArg;            # argument of "filter=arg" while a filter runs

# --------------------------------------------------------------- exports

our @EXPORT = qw(
    run_tests blocks repeat_each workers master_on master_off
    master_process_enabled no_shuffle log_level add_block_preprocessor
    no_long_string no_root_location env_to_nginx timeout worker_connections
    config_preamble use_hup server_root html_dir server_port
    server_port_for_client server_addr server_name bail_out
    add_cleanup_handler is_str
    plan ok is isnt like unlike is_deeply cmp_ok pass fail diag note skip
    done_testing
);

sub import ($class, @args) {
    my $caller = caller;

    # Test::Base style: `use Test::Nginx::Socket::Lua 'no_plan';` or
    # `use ... tests => 3;`.  Spiffy flags such as -Base are ignored.
    @args = grep { !/^-/ } @args;
    plan(@args) if @args;

    no strict 'refs';
    no warnings 'redefine';
    for my $sym (@EXPORT) {
        *{"${caller}::$sym"} = \&{"${class}::$sym"};
    }

    _install_signal_handlers();
}

# ------------------------------------------------ configuration functions

sub repeat_each :prototype(@) (@v) { $RepeatEach = shift @v if @v; $RepeatEach }
sub workers     :prototype(@) (@v) { $Workers = shift @v if @v; $Workers }
sub log_level   :prototype(@) (@v) { $LogLevel = shift @v if @v; $LogLevel }
sub timeout     :prototype(@) (@v) { $Timeout = shift @v if @v; $Timeout }
sub server_addr :prototype(@) (@v) { $ServerAddr = shift @v if @v; $ServerAddr }
sub server_name :prototype(@) (@v) { $ServerName = shift @v if @v; $ServerName }
sub worker_connections :prototype(@) (@v) {
    $WorkerConnections = shift @v if @v;
    $WorkerConnections;
}
sub server_port :prototype(@) (@v) {
    $ServerPort = $ServerPortForClient = shift @v if @v;
    $ServerPort;
}
sub server_port_for_client :prototype(@) (@v) {
    $ServerPortForClient = shift @v if @v;
    $ServerPortForClient;
}
sub master_process_enabled :prototype(@) (@v) {
    $MasterProcessEnabled = (shift @v) ? 'on' : 'off' if @v;
    $MasterProcessEnabled;
}

sub master_on        :prototype() () { $MasterProcessEnabled = 'on' }
sub master_off       :prototype() () { $MasterProcessEnabled = 'off' }
sub no_shuffle       :prototype() () { $NoShuffle = 1 }
sub no_long_string   :prototype() () { $NoLongString = 1 }
sub no_root_location :prototype() () { $NoRootLocation = 1 }
sub use_hup          :prototype() () { $UseHup = 1 }
sub server_root      :prototype() () { $ServRoot }
sub html_dir         :prototype() () { $HtmlDir }

sub config_preamble :prototype($) ($text) { $ConfigPreamble = $text }

sub env_to_nginx :prototype(@) (@vars) {
    Carp::croak('env_to_nginx: no arguments specified') unless @vars;
    for my $v (@vars) {
        Carp::croak("env_to_nginx: bad argument value: $v")
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# Like upstream, the preprocessor added last runs first.
sub add_block_preprocessor :prototype(&) ($code) { unshift @BlockPreprocessors, $code }
sub add_cleanup_handler    :prototype($) ($code) { unshift @CleanupHandlers, $code }

sub is_str :prototype(@) ($got, $expected, $desc = undef) {
    return like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return is($got, $expected, $desc);
}

sub bail_out :prototype(@) (@msg) {
    _cleanup();
    BAIL_OUT(join '', @msg);
}

# ============================================================ block parsing
#
# The `=== name` / `--- section [filters]` format of Test::Base: default
# filters `norm trim`, `-filter` removes one, `+filter` appends one, inline
# `--- name: value`, and the ONLY / SKIP / LAST pseudo-sections.

sub blocks :prototype() () {
    $Blocks //= _parse_spec(_read_spec());
    return wantarray ? @$Blocks : scalar @$Blocks;
}

sub _read_spec () {
    no strict 'refs';
    no warnings 'once';
    my $fh = \*{'main::DATA'};
    return '' unless defined fileno $fh;
    local $/;
    my $spec = <$fh>;
    return $spec // '';
}

sub _parse_spec ($spec) {
    my @blocks;
    for my $hunk ($spec =~ /^(===.*?(?=^===|\z))/msg) {
        my $block = _make_block($hunk);
        if ($block->_has('ONLY')) {
            diag("I found ONLY: maybe you're debugging?");
            @blocks = ($block);
            last;
        }
        next if $block->_has('SKIP');
        push @blocks, $block;
        last if $block->_has('LAST');
    }
    $blocks[$_]{seq_num} = $_ + 1 for 0 .. $#blocks;
    _run_filters($_) for @blocks;
    return \@blocks;
}

sub _make_block ($hunk) {
    $hunk =~ s/\A===[ \t]*(.*)\s+// or bail_out("bad block header: $hunk");
    my $name  = $1;
    my @parts = split /^--- +\(?(\w+)\)? *(.*)?\n/m, $hunk;

    my $block = Test::Nginx::Socket::Lua::Block->new;
    my $description = shift(@parts) // '';
    $description = $name unless $description =~ /\S/;
    $description =~ s/\s*\z//;
    $block->set_value(description => $description);

    while (@parts) {
        my ($type, $filters, $value) = splice @parts, 0, 3;
        $value   //= '';
        $filters //= '';
        if ($filters =~ /:(\s|\z)/) {    # inline `--- name: value`
            bail_out("$name - extra lines not allowed in inline '$type' section")
                if $value =~ /\S/;
            ($filters, $value) = split /\s*:(?:\s+|\z)/, $filters, 2;
            $value //= '';
            $value =~ s/^\s*(.*?)\s*$/$1/;
        }
        $block->{filters}{$type} = $filters;
        push @{ $block->{order} }, $type;
        $block->set_value($type, $value);
    }
    $block->set_value(name => $name);
    return $block;
}

my %Filters = (
    norm => sub (@v) {
        my $t = $v[0] // '';
        $t =~ s/\015\012/\n/g;
        $t =~ s/\r/\n/g;
        return $t;
    },
    trim    => sub (@v) { map { s/\A([ \t]*\n)+//; s/(?<=\n)\s*\z//g; $_ } @v },
    chomp   => sub (@v) { map { chomp if defined; $_ } @v },
    chop    => sub (@v) { map { chop if defined; $_ } @v },
    unchomp => sub (@v) { map { $_ . "\n" } @v },
    eval    => sub (@v) {
        die "the eval filter takes one value, not " . scalar(@v) . "\n" if @v != 1;
        my @r = Test::Base::Filter::_runner_eval($v[0]);
        if ($@) {
            # Upstream (Test::Base) silently makes the error the value.
            diag("eval filter: $@(the section's value is this error text, as under upstream)");
            return $@;
        }
        return @r;
    },
    lines => sub (@v) {
        my $t = $v[0] // '';
        return () unless length $t;
        return grep { length } ($t =~ /^(.*\n?)/gm);
    },
    join          => sub (@v) { join $FilterArg // '', @v },
    base64_decode => sub (@v) { MIME::Base64::decode_base64($v[0]) },
    base64_encode => sub (@v) { MIME::Base64::encode_base64($v[0]) },
    regexp        => sub (@v) {
        my $text  = $v[0];
        my $flags = $FilterArg;
        if ($text =~ /\n.*?\n/s) { $flags //= 'xism' } else { chomp $text }
        $flags //= '';
        my $re = eval "qr{$text}$flags";
        die $@ if $@;
        return $re;
    },
);

sub _filter_list ($string) {
    $string //= '';
    $string =~ s/^\s+//;
    my (@filters, @append);
    for ('norm', 'trim', split /\s+/, $string) {
        my $f = $_;
        last unless length $f;
        if    ($f =~ s/^-//)  { @filters = grep { $_ ne $f } @filters }
        elsif ($f =~ s/^\+//) { push @append, $f }
        else                  { push @filters, $f }
    }
    return (@filters, @append);
}

sub _run_filters ($block) {
    my $name = $block->name;
    for my $type (@{ $block->{order} || [] }) {
        my @value = @{ $block->{v}{$type} };
        for my $filter (_filter_list($block->{filters}{$type})) {
            local $FilterArg = $filter =~ s/=(.*)$// ? $1 : undef;
            my $code = do { no strict 'refs'; defined &{"main::$filter"} && \&{"main::$filter"} }
                || $Filters{$filter}
                || bail_out("$name - unknown filter '$filter' in section '$type'");
            local $_ = join '', grep { defined } @value;
            @value = eval { $code->(@value) };
            bail_out("$name - filter '$filter' on section '$type' failed: $@") if $@;
            $block->set_value($type, @value);
        }
    }
}

# ============================================================== run_tests

sub run_tests :prototype() () {
    _check_nginx_binary();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    my @blocks = _ordered_blocks();
    for my $i (0 .. $#blocks) {
        my $block = $blocks[$i];
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);    # like upstream
        _run_block($block, $i == $#blocks);
    }
    # diag, unlike the note above, also shows in prove's non-verbose output.
    diag("blocks ran shuffled with seed $UsedSeed: replay this order with "
         . "TEST_NGINX_SHUFFLE_SEED=$UsedSeed")
        if defined $UsedSeed && !Test::More->builder->is_passing;

    _cleanup() unless $NoClean;
}

# Like upstream, blocks run in random order unless no_shuffle() or
# TEST_NGINX_NO_SHUFFLE; HUP mode and repeat_each change nothing (the
# repetitions of a block stay together).  Upstream seeds with its pid and does
# not say so; here the seed is printed and TEST_NGINX_SHUFFLE_SEED replays it.
sub _ordered_blocks () {
    my @blocks = blocks();
    return @blocks if $NoShuffle || @blocks < 2;
    my $seed = $ShuffleSeed // '';
    $seed = $$ unless length $seed;
    bail_out("TEST_NGINX_SHUFFLE_SEED must be a non-negative integer, not '$seed'")
        unless $seed =~ /^\d+$/;
    srand($seed);
    $UsedSeed = $seed;
    @blocks = List::Util::shuffle(@blocks);
    note("shuffle seed: $seed (replay this order with TEST_NGINX_SHUFFLE_SEED=$seed)");
    note('block order: ' . join(' ', map { $_->seq_num } @blocks)) if $Verbose;
    return @blocks;
}

# One block: start (or HUP) nginx, send the request `repeat_each` times,
# check each response and error-log slice, then stop nginx.  Everything that
# can block runs under an overall deadline; the number of assertions depends
# only on the block's sections, never on what failed.
sub _run_block ($block, $is_last) {
    my $name = $block->name;

    _check_supported($block);
    return if _skip_block($block);

    my $spec = _block_spec($block);
    my (@reps, $block_log_start);

    my $error = _with_deadline(_block_deadline($spec), sub {
        $block_log_start = _ensure_server($block, $spec);
        for my $rep (0 .. $RepeatEach - 1) {
            push @reps, _exchange($spec);
        }
    });
    $block_log_start //= 0;
    if (@reps < $RepeatEach) {
        # Checks of the requests that never ran see what nginx did log.
        my $log = [_log_lines_from(@reps ? $ErrLogPos : $block_log_start)];
        push @reps, { error => $error, whole_block => 1, log => $log }
            while @reps < $RepeatEach;
    }

    my $all_ok = 1;
    for my $rep (0 .. $RepeatEach - 1) {
        my $r   = $reps[$rep];
        my $tag = $RepeatEach > 1 ? " (req $rep)" : '';
        diag("$name$tag - $r->{error}") if $r->{error} && !$r->{whole_block};
        $all_ok = 0 unless _check_response($block, $spec, $r, $tag);
        $all_ok = 0 unless _check_error_log($block, $r, $tag, $rep);
    }
    _diag_failure($name, $error, $block_log_start) unless $all_ok;

    if (!$UseHup && !($NoClean && $is_last)) {
        my $err = _with_deadline($StopTimeout + 10, sub { _stop_nginx($name) });
        diag("$name - $err") if $err;
    }
    $FirstBlock = 0;
}

# Everything the block needs, with $TEST_NGINX_* expanded.
sub _block_spec ($block) {
    my $name = $block->name;
    my %rand_ports;
    my %spec = (name => $name);
    for my $s (qw(config http_config main_config post_main_config)) {
        my $v = $block->$s;
        bail_out("$name - --- $s must be a string") if ref $v;
        $spec{$s} = _expand_env($v // '', $name, \%rand_ports);
    }
    $spec{request}   = _build_request($block, $name, \%rand_ports);
    $spec{timeout}   = _parse_time(scalar $block->timeout) // $Timeout;
    $spec{wait}      = _parse_time(scalar $block->wait) // 0;
    $spec{log_level} = $block->log_level || $LogLevel;
    return \%spec;
}

sub _block_deadline ($spec) {
    return 2 * $StartTimeout + $PortFreeTimeout + 2 * $ReloadTimeout + $StopTimeout + 10
        + $RepeatEach * ($spec->{timeout} + $spec->{wait} + 5);
}

# Runs $code with an alarm; returns undef or the error message.
sub _with_deadline ($secs, $code) {
    my $ok = eval {
        local $SIG{ALRM} = sub { die "block deadline of ${secs}s exceeded\n" };
        alarm(POSIX::ceil($secs));
        $code->();
        alarm 0;
        1;
    };
    my $err = $@;
    alarm 0;
    return undef if $ok;
    chomp $err;
    return $err || 'unknown error';
}

# One repetition: request, `wait`, then this repetition's error-log lines.
sub _exchange ($spec) {
    my $res = _http_request($spec->{request}, $spec->{timeout});
    sleep $spec->{wait} if $spec->{wait};
    sleep $LogSettle;
    $res->{log} = _read_error_log();
    return $res;
}

# ------------------------------------------------------- skipping, support

# Sections upstream supports but this runner does not: fail loudly rather
# than pass a test whose assertions were silently ignored.
my @Unsupported = qw(
    raw_request pipelined_requests request_eval response_body_eval
    raw_response_headers_like raw_response_headers_unlike
    response_headers_unlike response_body_json response_body_json_like
    user_files tcp_listen tcp_reply tcp_query tcp_query_len udp_listen
    udp_reply udp_query must_die shutdown_error_log stap stap_out curl
    ignore_response abort shutdown skip_openssl skip_slave skip_nginx2
    todo todo_nginx http2 http3 init reload_fails error_log_file charset
    server_name stream_config stream_server_config stream_request
    stream_response
);

sub _check_supported ($block) {
    my $name = $block->name;
    for my $s (@Unsupported) {
        next unless $block->_has($s);
        bail_out("$name - section '--- $s' is not supported by this runner "
                 . "(t/lib/runner/Test/Nginx/Socket/Lua.pm)");
    }
}

sub _skip_block ($block) {
    my $name = $block->name;
    my ($n, $reason, $skip);
    if (defined(my $se = $block->skip_eval)) {
        $se =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - invalid --- skip_eval spec: $se");
        ($n, my $code) = ($1, $2);
        $skip = _eval_skip($code);
        bail_out("$name - skip_eval failed: $@") if $@;
        $reason = 'skip_eval';
    }
    if (!$skip && defined(my $sn = $block->skip_nginx)) {
        $sn =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/
            or bail_out("$name - invalid --- skip_nginx spec: $sn");
        $n = $1;
        my ($op, $want) = ($2, sprintf('%d.%03d%03d', $3, $4, $5));
        $reason = $6 || "nginx version $op $3.$4.$5";
        my $have = _nginx_version();
        $skip = eval "$have $op $want";
    }
    return 0 unless $skip;
    SKIP: { skip("$name - $reason", $n) }
    return 1;
}

# ====================================================== nginx lifecycle

# Starts nginx for this block (or, in HUP mode, reloads the running one).
# Returns the error-log offset at which this block's log starts.
sub _ensure_server ($block, $spec) {
    my $name = $spec->{name};
    my $pid  = _read_pid();

    if ($UseHup && !$FirstBlock && $pid && _alive($pid)) {
        return _reload_nginx($block, $spec, $pid);
    }

    _stop_nginx($name);    # a leftover from an earlier run, if any
    _setup_server_root();
    _write_config($block, $spec);
    _start_nginx($name);
    return $ErrLogPos = 0;
}

sub _setup_server_root () {
    # Only our own sub-directories are removed, never $ServRoot itself.
    remove_tree($ConfDir, $LogDir, $HtmlDir, glob("$ServRoot/*_temp"));
    make_path($ConfDir, $LogDir, $HtmlDir);
    _write_file("$HtmlDir/index.html",
        '<html><head><title>It works!</title></head><body>It works!</body></html>');
}

sub _write_config ($block, $spec) {
    my $master = $UseHup ? 'on' : $MasterProcessEnabled;    # HUP needs a master
    my $load   = join '', map { "load_module $_;\n" } grep { length } split /\s+/, $LoadModules // '';
    my $env    = join '', map { /\s/ ? "env '$_';\n" : "env $_;\n" } @EnvToNginx;
    my $user   = $> == 0 ? "user root;\n" : '';
    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    my $ver_server = '';
    if ($UseHup) {
        $ConfigVersion = join '', map { ('a' .. 'z', 0 .. 9)[rand 36] } 1 .. 12;
        $ver_server = <<"_EOC_";
    server {
        listen          $ServerPort;
        server_name     'Test-Nginx';
        location = /ver {
            return 200 '$ConfigVersion';
        }
    }
_EOC_
    }
    my $temp = join '', map { "    ${_}_temp_path $ServRoot/${_}_temp;\n" }
        qw(client_body proxy fastcgi uwsgi scgi);

    _write_file($ConfFile, <<"_EOC_");
# generated by t/lib/runner/Test/Nginx/Socket/Lua.pm
# block: $spec->{name}
${load}worker_processes  $Workers;
daemon on;
master_process $master;
error_log $ErrLogFile $spec->{log_level};
pid       $PidFile;
$env
$spec->{main_config}

http {
    access_log off;
    default_type text/plain;
    keepalive_timeout  68;
$temp
$spec->{http_config}

    server {
        listen          $ServerPort;
        server_name     '$ServerName';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$spec->{config}
        # End test case config.

$root_location    }
$ver_server}

$spec->{post_main_config}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
_EOC_
}

sub _start_nginx ($name) {
    _wait_port_free();
    unlink $PidFile;

    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile, '-e', $ErrLogFile);
    $StartedNginx = 1;
    my $launcher = fork // die "fork failed: $!\n";
    if ($launcher == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $StderrFile;
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec { $cmd[0] } @cmd }
        POSIX::_exit(127);    # no END blocks in the child
    }

    # With `daemon on` the launcher exits as soon as nginx has daemonized.
    my $deadline = time + $StartTimeout;
    my $status;
    while (1) {
        my $r = waitpid($launcher, WNOHANG);
        if ($r == $launcher) { $status = $?; last }
        if (time > $deadline) {
            kill KILL => $launcher;
            waitpid($launcher, 0);
            die "nginx did not daemonize within ${StartTimeout}s: @cmd\n" . _stderr_text();
        }
        sleep 0.01;
    }
    if ($status != 0) {
        die sprintf("nginx failed to start (exit code %d): %s\n%s",
                    $status >> 8, "@cmd", _stderr_text());
    }

    # The listening socket is bound before nginx daemonizes, and the daemon
    # writes the pid file: once that pid runs, requests queue in the backlog.
    # (No probe connection, which would only add a log line to every block.)
    while (1) {
        my $pid = _read_pid();
        if ($pid && !_alive($pid)) {
            die "nginx (pid $pid) exited right after starting\n" . _stderr_text();
        }
        last if $pid;
        die "nginx wrote no pid file within ${StartTimeout}s\n" . _stderr_text()
            if time > $deadline;
        sleep 0.01;
    }
}

# HUP mode: write the new config, HUP the master, wait until /ver answers the
# new config version and the old workers have exited.
sub _reload_nginx ($block, $spec, $master) {
    my $name  = $spec->{name};
    my @old   = _children($master);
    my $start = $ErrLogPos = (-s $ErrLogFile) || 0;

    _write_config($block, $spec);
    kill HUP => $master or die "cannot send HUP to nginx master $master: $!\n";

    my $deadline = time + $ReloadTimeout;
    while ((_http_get_ver() // '') ne $ConfigVersion) {
        if (my ($emerg) = grep { /\[emerg\]/ } _log_lines_from($start)) {
            die "nginx rejected the new configuration on HUP: $emerg";
        }
        die "nginx master $master exited during reload\n" unless _alive($master);
        die "nginx did not load the new configuration within ${ReloadTimeout}s\n"
            if time > $deadline;
        sleep 0.02;
    }

    $deadline = time + $ReloadTimeout;
    while (my @left = grep { _alive($_) } @old) {
        if (time > $deadline) {
            note("$name - old workers @left still running ${ReloadTimeout}s after HUP; killing them");
            kill KILL => @left;
            _wait_gone(2, @left);
            last;
        }
        sleep 0.02;
    }
    return $start;
}

# Graceful stop with QUIT; SIGKILL (master and workers) after $StopTimeout.
sub _stop_nginx ($name) {
    my $pid = _read_pid();
    return unless $pid && _alive($pid) && _is_nginx($pid);

    my @procs = ($pid, _children($pid));
    kill QUIT => $pid;
    if (!_wait_gone($StopTimeout, $pid)) {
        note("$name - nginx $pid still running ${StopTimeout}s after QUIT; sending KILL");
        kill KILL => grep { _alive($_) } @procs, _children($pid);
    }
    if (my @left = grep { _alive($_) } @procs) {
        kill KILL => @left;
        _wait_gone(2, @left)
            or diag("$name - WARNING: nginx processes @left survived SIGKILL");
    }
    unlink $PidFile;
}

# Only an nginx this process started is stopped: a perl that merely loads
# the module (perl -c, a one-liner) leaves a running suite's nginx alone.
sub _cleanup () {
    return unless $$ == $OwnerPid;
    while (my $handler = shift @CleanupHandlers) { $handler->() }
    return unless $StartedNginx;
    eval { _stop_nginx('cleanup'); 1 } or warn "cleanup: $@";
}

sub _install_signal_handlers () {
    state $done;
    return if $done++;
    # Exiting runs the END blocks below (and those of helper modules).
    # SIGPIPE (e.g. `prove ... | head`) would otherwise kill us without
    # running them; later writes then fail quietly instead.
    my %exit = (INT => 130, TERM => 143, HUP => 129, PIPE => 141);
    for my $sig (sort keys %exit) {
        next if ref $SIG{$sig} eq 'CODE';
        $SIG{$sig} = sub { $SIG{PIPE} = 'IGNORE'; exit $exit{$sig} };
    }
}

END {
    local $?;
    _cleanup() if !$NoClean && $$ == $OwnerPid;
}

# ---------------------------------------------------------- process helpers

sub _read_pid () {
    open my $fh, '<', $PidFile or return undef;
    my $pid = <$fh>;
    return undef unless defined $pid && $pid =~ /^(\d+)/;
    return $1;
}

# kill 0 succeeds for zombies, so a zombie (reparented to a PID 1 that does
# not reap) counts as gone.
sub _alive ($pid) {
    return 0 unless $pid && kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my $stat = <$fh> // '';
    my ($state) = $stat =~ /\)\s+(\S)/;
    return !(defined $state && ($state eq 'Z' || $state eq 'X'));
}

# Guards against signalling an unrelated process that reused a stale pid.
sub _is_nginx ($pid) {
    my $cmd = _slurp("/proc/$pid/cmdline") // return 1;
    return $cmd =~ /nginx/;
}

sub _wait_gone ($secs, @pids) {
    my $deadline = time + $secs;
    while (grep { _alive($_) } @pids) {
        return 0 if time > $deadline;
        sleep 0.02;
    }
    return 1;
}

sub _children ($ppid) {
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh> // next;
        push @kids, $p if $stat =~ /\)\s+\S+\s+(\d+)/ && $1 == $ppid;
    }
    return @kids;
}

sub _port_accepts () {
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $ServerPort,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}

# A process that an earlier block's nginx forked (os.execute(... &)) keeps
# the listening socket it inherited; upstream retries starting nginx for 30 s,
# so this waits as long, then names whoever holds the port.
sub _wait_port_free () {
    my $deadline = time + $PortFreeTimeout;
    while (_port_accepts()) {
        if (time > $deadline) {
            my @holders = _port_holders($ServerPort);
            die "port $ServerPort still accepts ${PortFreeTimeout}s after the last block's nginx "
                . 'stopped; held by: ' . (@holders ? join('; ', @holders) : 'unknown')
                . " (another test run? set TEST_NGINX_PORT to another port)\n";
        }
        sleep 0.1;
    }
}

# "pid (cmdline)" of every process with a listening socket on $port.
sub _port_holders ($port) {
    my %inodes;
    for my $table ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $table or next;
        while (<$fh>) {
            my @f = split;
            next unless @f > 9 && $f[3] eq '0A';    # LISTEN
            $inodes{ $f[9] } = 1 if $f[1] =~ /:([0-9A-F]{4})$/ && hex($1) == $port;
        }
    }
    return () unless %inodes;
    my @holders;
    opendir my $dh, '/proc' or return ();
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        opendir my $fd, "/proc/$pid/fd" or next;
        my $holds = grep { (readlink("/proc/$pid/fd/$_") // '') =~ /^socket:\[(\d+)\]$/ && $inodes{$1} }
                    readdir $fd;
        next unless $holds;
        (my $cmd = _slurp("/proc/$pid/cmdline") // '') =~ s/\0+/ /g;
        $cmd =~ s/\s+$//;
        push @holders, "$pid ($cmd)";
    }
    return @holders;
}

sub _stderr_text () {
    my $text = _slurp($StderrFile) // '';
    return $text =~ /\S/ ? "nginx stderr:\n$text" : '';
}

sub _check_nginx_binary () {
    bail_out("Cannot find the nginx executable ($NginxBinary); set TEST_NGINX_BINARY")
        unless -x $NginxBinary;
}

sub _default_nginx_binary () {
    for my $dir (split /:/, $ENV{PATH} // '') {
        return "$dir/nginx" if length $dir && -x "$dir/nginx" && !-d _;
    }
    return '/usr/sbin/nginx';
}

sub _nginx_version () {
    return $NginxVersion if defined $NginxVersion;
    my $out = `$NginxBinary -v 2>&1` // '';
    $out =~ m{nginx/(\d+)\.(\d+)\.(\d+)}
        or bail_out("Failed to parse the output of \"$NginxBinary -v\": $out");
    return $NginxVersion = sprintf('%d.%03d%03d', $1, $2, $3);
}

# ============================================================ HTTP client

sub _build_request ($block, $name, $rand_ports) {
    my $req = $block->request;
    bail_out("$name - no '--- request' section") unless defined $req;
    bail_out("$name - array-valued '--- request' is not supported by this runner")
        if ref $req;
    $req = _expand_env($req, $name, $rand_ports);
    1 while $req =~ s/^\s*\#[^\n]+\s+|^\s+//gs;    # leading comments and blanks

    my ($first, $content) = split /\n/, $req, 2;
    $first //= '';
    $first =~ /^(\S+)(?: +(\S+))?(?: +(\S+))?\s*$/
        or bail_out("$name - Request line is not valid. Should be 'meth [url [version]]' "
                    . "but got \"$first\".");
    my ($meth, $url, $ver) = ($1, $2 // '/', $3 // 'HTTP/1.1');

    my $more = $block->more_headers // '';
    bail_out("$name - array-valued '--- more_headers' is not supported by this runner")
        if ref $more;
    my ($hdr, $chunked) = _parse_more_headers(_expand_env($more, $name, $rand_ports));

    $content //= '';
    my $len = '';
    if (!$chunked && $content ne '' && $hdr !~ /(?:^|\n)Content-Length:/) {
        $content =~ s/^\s+|\s+$//gs;
        $len = 'Content-Length: ' . length($content) . "\r\n";
    }
    my $headers = '';
    $headers .= "Host: $ServerName\r\n"  unless $hdr =~ /(?:^|\n)Host:/mi;
    $headers .= "Connection: close\r\n" unless $hdr =~ /(?:^|\n)Connection/mi;
    return "$meth $url $ver\r\n$headers$hdr$len\r\n$content";
}

sub _parse_more_headers ($text) {
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text) {
        next if $line =~ /^\s*\#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $chunked = 1 if lc $key eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# Sends $raw and reads until the server closes the connection, all within
# $timeout seconds.  Returns { status, headers, body, raw } or { error }.
sub _http_request ($raw, $timeout, $port = $ServerPortForClient) {
    my $deadline = time + $timeout;
    my $sock = IO::Socket::INET->new(
        PeerAddr => $ServerAddr, PeerPort => $port, Proto => 'tcp',
        Timeout  => $timeout < 5 ? $timeout : 5,
    ) or return { error => "cannot connect to $ServerAddr:$port: " . ($@ || $!) };
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';

    my $sel = IO::Select->new($sock);
    my ($off, $resp, $write_err) = (0, '', undef);
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            close $sock;
            return { error => "client socket timed out after ${timeout}s "
                              . '(no complete response; --- timeout)',
                     raw => $resp };
        }
        my $writing = !defined $write_err && $off < length $raw;
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef, undef, $left);
        if ($w && @$w) {
            my $n = syswrite $sock, $raw, length($raw) - $off, $off;
            if (defined $n) { $off += $n }
            elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) { $write_err = "$!" }
        }
        if ($r && @$r) {
            my $n = sysread $sock, my $buf, 65536;
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                last if length $resp;    # e.g. reset after a full response
                close $sock;
                return { error => "read failed: $!", raw => $resp };
            }
            last if $n == 0;
            $resp .= $buf;
        }
    }
    close $sock;
    return _parse_response($resp);
}

sub _parse_response ($raw) {
    return { error => 'empty response (connection closed by nginx)', raw => $raw }
        unless length $raw;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return { error => 'malformed response (no end of headers)', raw => $raw }
        unless defined $body;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/\d+\.\d+\s+(\d{3})}
        or return { error => "malformed status line: $status_line", raw => $raw };

    my %headers;
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $headers{lc $k} }, $v;
    }
    my %h = map { $_ => join ', ', @{ $headers{$_} } } keys %headers;

    my $res = { status => $status, headers => \%h, raw => $raw };
    if (($h{'transfer-encoding'} // '') =~ /\bchunked\b/i) {
        my ($decoded, $err) = _decode_chunked($body);
        return { %$res, error => "invalid chunked body: $err" } if defined $err;
        $body = $decoded;
    }
    elsif (defined $h{'content-length'} && $h{'content-length'} =~ /^\d+$/
           && length $body > $h{'content-length'}) {
        $body = substr $body, 0, $h{'content-length'};
    }
    $res->{body} = $body;
    return $res;
}

sub _decode_chunked ($raw) {
    my $out = '';
    while (1) {
        $raw =~ /\G[ \t]*([0-9A-Fa-f]+)[^\r\n]*\r\n/gc
            or return (undef, 'bad or missing chunk size (no last chunk?)');
        my $size = hex $1;
        return ($out, undef) if $size == 0;
        my $start = pos $raw;
        return (undef, 'chunk shorter than its size') if length($raw) < $start + $size + 2;
        $out .= substr $raw, $start, $size;
        pos($raw) = $start + $size;
        $raw =~ /\G\r\n/gc or return (undef, 'missing CRLF after chunk data');
    }
}

sub _http_get_ver () {
    my $res = _http_request("GET /ver HTTP/1.1\r\nHost: Test-Nginx\r\nConnection: close\r\n\r\n",
                            1, $ServerPort);
    return $res->{error} ? undef : $res->{body};
}

# ================================================================ checks

# Returns true when every assertion passed.
sub _check_response ($block, $spec, $r, $tag) {
    my $name = $spec->{name};
    my $ok   = 1;

    my $code = $block->error_code // 200;
    bail_out("$name - array-valued '--- error_code' is not supported") if ref $code;
    $code =~ s/^\s+|\s+$//g;
    $ok = 0 unless is($r->{status} // '', $code, "$name - status code ok$tag");

    $ok = 0 unless _check_headers($block, $r, $tag);

    my $body = $r->{body};
    if (defined $block->response_body) {
        my $expected = $block->response_body;
        if (ref $expected eq 'Regexp') {
            $ok = 0 unless like($body, $expected, "$name - response_body - like$tag");
        }
        else {
            bail_out("$name - array-valued '--- response_body' is not supported") if ref $expected;
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $ok = 0 unless is($body, $expected, "$name - response_body - response is expected$tag");
        }
    }
    elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $pat  = $type eq 'like' ? $block->response_body_like : $block->response_body_unlike;
        bail_out("$name - array-valued '--- response_body_$type' is not supported")
            if ref $pat && ref $pat ne 'Regexp';
        $pat =~ s/\$ServerPort\b/$ServerPort/g unless ref $pat;
        my $summary = _summary($body);
        my $desc = "$name - response_body_$type - response is expected ($summary)$tag";
        # Unanchored and /s, exactly like upstream.
        $ok = 0 unless $type eq 'like' ? like($body, qr/$pat/s, $desc) : unlike($body, qr/$pat/s, $desc);
    }
    return $ok;
}

sub _check_headers ($block, $r, $tag) {
    my $name = $block->name;
    my $ok   = 1;
    for my $type (qw(response_headers response_headers_like)) {
        my $spec = $block->$type;
        next unless defined $spec;
        for my $line (split /\n/, $spec) {
            $line =~ s/^\s+|\s+$//g;
            next unless length $line;
            my $neg = $line =~ s/^!\s*//;
            my ($key, $val) = split /\s*:\s*/, $line, 2;
            my $got = $r->{headers}{lc $key};
            if ($neg) {
                $ok = 0 unless ok(!defined $got, "$name - header $key not present$tag");
            }
            elsif ($type eq 'response_headers') {
                $ok = 0 unless is($got // '', $val // '', "$name - header $key ok$tag");
            }
            else {
                $ok = 0 unless like($got // '', qr/^$val$/, "$name - header $key like ok$tag");
            }
        }
    }
    return $ok;
}

sub _check_error_log ($block, $r, $tag, $rep) {
    my $name  = $block->name;
    my @lines = @{ $r->{log} // [] };
    my $ok    = 1;

    if (defined(my $pats = $block->error_log)) {
        for my $pat (@{ _pattern_list($pats) }) {
            next unless defined $pat;
            my $found = grep { _line_matches($_, $pat) } @lines;
            $ok = 0 unless ok($found, sprintf('%s - pattern "%s" matches a line in error.log%s',
                                       $name, _fmt($pat), $tag));
        }
    }

    if (defined(my $pats = $block->no_error_log)) {
        for my $pat (@{ _pattern_list($pats) }) {
            next unless defined $pat;
            my @hits = grep { _line_matches($_, $pat) } @lines;
            my $pass = ok(!@hits, sprintf('%s - pattern "%s" should not match any line in error.log%s',
                                          $name, _fmt($pat), $tag));
            if (!$pass) {
                diag(sprintf('but matches line "%s"', _fmt($_)))
                    for @hits > 5 ? @hits[0 .. 4] : @hits;
                diag(sprintf('... and %d more matching lines', @hits - 5)) if @hits > 5;
            }
            $ok = 0 unless $pass;
        }
    }

    # Like upstream: [alert], [crit] and [emerg] lines are shown (not failed)
    # unless the block's own patterns mention that level.
    my @mentioned = map { ref $_ eq 'ARRAY' ? @$_ : $_ }
                    grep { defined } $block->error_log, $block->no_error_log;
    for my $level (qw(alert crit emerg)) {
        next if grep { "$_" =~ /\Q[$level\E/ } @mentioned;
        diag(sprintf('WARNING: %s - %s', $name, _fmt($_))) for grep { /\[$level\]/ } @lines;
    }

    if (defined(my $gpat = $block->grep_error_log)) {
        $gpat = $gpat->[$rep] if ref $gpat eq 'ARRAY';
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        my $matched = '';
        for my $line (@lines) {
            if (ref $gpat ? $line =~ $gpat : $line =~ /\Q$gpat\E/) {
                $matched .= "$&\n" unless $& =~ /\n/;
            }
        }
        $ok = 0 unless ref $expected eq 'Regexp'
            ? like($matched, $expected, "$name - grep_error_log_out$tag")
            : is($matched, $expected, "$name - grep_error_log_out$tag");
    }
    return $ok;
}

sub _pattern_list ($pats) {
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats eq 'ARRAY';
    chomp $pats;
    return [split /\n+/, $pats];
}

sub _line_matches ($line, $pat) {
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub _fmt ($str) {
    $str = "$str";
    chomp $str;
    $str =~ s/"/\\"/g;
    $str =~ s/\r/\\r/g;
    $str =~ s/\n/\\n/g;
    return $str;
}

sub _summary ($s) {
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\s+/ /g;
    return length $s > 100 ? substr($s, 0, 100) . '...' : $s;
}

# Names the block, the reason, and shows the tail of this block's error log.
sub _diag_failure ($name, $why, $log_start) {
    my @all   = _log_lines_from($log_start);
    my @plain = _non_debug(@all);
    my @tail  = @plain > 60 ? @plain[-60 .. -1] : @plain;
    my @msg   = ("FAILED block: $name");
    push @msg, "reason: $why" if $why;
    push @msg, _stderr_text() if $why && $why !~ /nginx stderr:/ && _stderr_text();
    push @msg, sprintf('last %d non-debug lines of %s written during this block '
                       . '(%d debug lines not shown):', scalar @tail, $ErrLogFile,
                       @all - @plain);
    push @msg, map { chomp(my $l = $_); "    $l" } @tail;
    push @msg, '    (none)' unless @tail;
    diag(join "\n", @msg);
}

# Drops debug entries, including the continuation lines of multi-line ones
# (e.g. the response headers nginx dumps at debug level).
sub _non_debug (@lines) {
    my $debug = 0;
    return grep {
        $debug = $1 eq 'debug' if m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\]};
        !$debug;
    } @lines;
}

# =============================================================== helpers

sub _read_error_log () {
    my @lines = _log_lines_from($ErrLogPos);
    $ErrLogPos = (-s $ErrLogFile) || 0;
    return \@lines;
}

sub _log_lines_from ($pos) {
    open my $fh, '<', $ErrLogFile or return ();
    seek $fh, $pos, 0 if $pos;
    return <$fh>;
}

sub _expand_env ($text, $name, $rand_ports) {
    return $text unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $rand_ports->{$var} //= _free_port();
        }
        else {
            bail_out("$name - No environment $var defined.\n") unless defined $ENV{$var};
            $ENV{$var};
        }
    }ge;
    return $text;
}

sub _free_port () {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or bail_out("cannot find a free port: $!");
    return $s->sockport;
}

sub _parse_time ($t) {
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1 if $t =~ /^([\d.]+)s?$/;
    return $t;
}

sub _slurp ($file) {
    open my $fh, '<', $file or return undef;
    local $/;
    return scalar <$fh>;
}

sub _write_file ($file, $content) {
    open my $fh, '>', $file or bail_out("cannot write $file: $!");
    print {$fh} $content;
    close $fh or bail_out("cannot write $file: $!");
}

# skip_eval code runs where upstream runs it: in Test::Nginx::Util's
# run_test, under strict.
sub _eval_skip {
    package Test::Nginx::Util;
    use strict;
    use warnings;
    return CORE::eval($_[0]);
}

# ============================================================ eval filter
#
# `--- SECTION eval` code runs where Test::Base's eval filter runs it: in
# package Test::Base::Filter, under strict and warnings.  A helper defined in
# the .t file is therefore only reachable as main::helper(), as upstream.

package Test::Base::Filter;

use strict;
use warnings;
no feature ':all';          # none of this file's `use v5.36` features
use feature ':default';

sub _runner_eval { return CORE::eval($_[0]) }

package Test::Nginx::Socket::Lua;

# ============================================================ block class
#
# The Test::Base::Block API that preprocessors use: $block->SECTION returns
# the value (first value in scalar context, undef when the section is
# absent), $block->set_value(name => value) sets or adds a section.

package Test::Nginx::Socket::Lua::Block;

use v5.36;

our $AUTOLOAD;

sub new ($class) { bless { v => {}, filters => {}, order => [] }, $class }

sub set_value ($self, $name, @values) {
    $self->{v}{$name} = [@values];
    return;
}

sub seq_num ($self) { $self->{seq_num} }

sub _has ($self, $name) { exists $self->{v}{$name} }

sub AUTOLOAD {
    my $self = shift;
    (my $name = $AUTOLOAD) =~ s/.*:://;
    Carp::croak("Not allowed to set values for '$name'") if @_;
    return unless ref $self && $self->{v}{$name};
    my @list = @{ $self->{v}{$name} };
    return wantarray ? @list : $list[0];
}

sub DESTROY { }

1;
__END__

=encoding utf8

=head1 NAME

Test::Nginx::Socket::Lua - core-Perl stand-in for upstream Test::Nginx

=head1 SYNOPSIS

    # t/foo.t, run with: prove -I t/lib/runner -r t/
    use lib 't/lib';
    use Test::Nginx::Socket::Lua 'no_plan';

    repeat_each(2);
    run_tests();

    __DATA__

    === TEST 1: sanity
    --- config
        location = /t { content_by_lua_block { ngx.say("ok") } }
    --- request
    GET /t
    --- response_body
    ok
    --- no_error_log
    [error]

=head1 DESCRIPTION

Replaces openresty/test-nginx, which this project cannot install.  Only core
Perl modules are used.  Whatever is supported behaves as upstream, so `.t`
files run unchanged under both.

=head2 Exported functions

C<run_tests>, C<blocks>, C<repeat_each>, C<workers>, C<master_on>,
C<master_off>, C<master_process_enabled>, C<no_shuffle> (blocks run in file
order; without it they run shuffled, as upstream), C<log_level>, C<add_block_preprocessor> (the last added runs
first), C<no_long_string>, C<no_root_location>, C<env_to_nginx>, C<timeout>,
C<worker_connections>, C<config_preamble>, C<use_hup>, C<server_root>,
C<html_dir>, C<server_port>, C<server_port_for_client>, C<server_addr>,
C<server_name>, C<bail_out>, C<add_cleanup_handler>, C<is_str>, and from
Test::More C<plan ok is isnt like unlike is_deeply cmp_ok pass fail diag note
skip done_testing>.  C<use Test::Nginx::Socket::Lua 'no_plan'> and
C<< use ... tests => N >> set the plan.

=head2 Block format

C<=== name> starts a block and C<--- section [filters]> a section.  The default
filters are C<norm trim>.  C<-name> removes a filter and C<+name> appends one.
C<--- name: value> is an inline section.  Supported filters: C<eval> (Perl
code evaluated as Test::Base evaluates it: in package C<Test::Base::Filter>,
under strict and warnings, so a helper sub of the .t file must be called as
C<main::helper()>; an error becomes the section's value, as upstream, and is
also shown with C<diag>), C<chomp>, C<chop>, C<trim>, C<norm>,
C<unchomp>, C<lines>, C<join>, C<regexp>, C<base64_decode>, C<base64_encode>,
and any function C<main::NAME>.  C<ONLY>, C<SKIP> and C<LAST> work as in
Test::Base.

=head2 Sections

=over

=item C<main_config>, C<http_config>, C<config>, C<post_main_config>

These are placed where upstream places them.  C<$TEST_NGINX_*> is taken from
%ENV: an undefined variable bails out with C<No environment X defined>.
C<$TEST_NGINX_RAND_PORT_N> is a free port, the same within one block.

=item C<request>

C<METHOD [URI [VERSION]]>, optionally followed by body lines.  The body is
trimmed and gets a Content-Length.  C<Host: localhost> and C<Connection:
close> are added unless C<more_headers> sets them.

=item C<more_headers>

One header per line.  Lines starting with C<#> are ignored.

=item C<error_code>

The expected status.  The default is 200.

=item C<response_body>

An exact match.  With C<eval>, a qr// value does a C<like> check.

=item C<response_body_like>, C<response_body_unlike>

The value is a regex matched unanchored with C</s>, like upstream.

=item C<response_headers>, C<response_headers_like>

C<Name: value> lines, and C<!Name> for an absent header.  C<_like> values are
anchored, as C<^value$>.

=item C<error_log>, C<no_error_log>

One substring per line, or with C<eval> a string, a qr// or an array ref of
them.  Only lines written during the current request are checked.  The slice
starts at nginx start, or at the HUP in HUP mode.  As upstream, C<[alert]>, C<[crit]> and
C<[emerg]> lines of the slice are shown as C<WARNING: ...> diagnostics (not
failures) unless the block's C<error_log> or C<no_error_log> patterns mention
that level.

=item C<grep_error_log>, C<grep_error_log_out>

These are as upstream.

=item C<timeout>

The whole-request limit in seconds (C<ms> and C<s> suffixes are allowed).  It
defaults to C<timeout()>, which is C<TEST_NGINX_TIMEOUT> or 3.  A request that
exceeds it fails its checks.

=item C<wait>

Seconds to sleep after the response and before the error log is read.

=item C<log_level>

A per-block C<error_log> level.

=item C<skip_eval>, C<skip_nginx>

C<N: perl-expr> and C<< N: <1.21.0 >>: skip N tests.

=back

Sections that upstream supports and this runner does not (for example
C<user_files>, C<tcp_listen>, C<must_die>, C<stream_*>, C<pipelined_requests>,
C<shutdown_error_log> and C<abort>) cause a bail-out, rather than a test
whose checks were silently dropped.  Array-valued C<request> is also refused.
Sections that nobody reads (for example custom sections that a preprocessor
interprets) are allowed.

=head2 Per block

The runner writes F<conf/nginx.conf> under C<$TEST_NGINX_SERVER_ROOT>.  The
config has C<load_module> lines first, then C<daemon on>, C<master_process>,
C<worker_processes>, C<error_log logs/error.log LEVEL>, C<pid>, C<env>,
main_config, C<events>, C<user root> (when root), and C<http> with
C<access_log off>, the temp paths inside the server root, http_config and
C<server { listen PORT; server_name localhost; ... config ...; location / }>.
The runner then starts C<nginx -p ROOT/ -c conf/nginx.conf -e logs/error.log>,
waits for the daemon's pid file, and sends the request C<repeat_each> times,
each time checking the response and that request's error-log lines.  Last, it
stops nginx with QUIT and waits for the pid to go; SIGKILL follows after 3 s.

The whole block runs under a deadline.  Each failure prints, with C<diag>,
the block name, the reason, nginx's stderr (if start failed) and the last 60
non-debug lines of this block's error log.  The number of assertions per
block depends only on its sections.

=head2 Environment

=over

=item C<TEST_NGINX_BINARY>

The nginx binary.  It defaults to C<nginx> in PATH, or else
F</usr/sbin/nginx>.

=item C<TEST_NGINX_SERVER_PORT>, C<TEST_NGINX_PORT>

The listen port, 1984 by default.  C<TEST_NGINX_SERVER_PORT> is exported.
C<TEST_NGINX_CLIENT_PORT> is the port the client connects to.

=item C<TEST_NGINX_SERVROOT>, C<TEST_NGINX_SERVER_ROOT>

The server root, F<t/servroot> by default.  It is made absolute and exported
as C<TEST_NGINX_SERVER_ROOT>.

=item C<TEST_NGINX_LOAD_MODULES>

Space-separated absolute C<.so> paths, which become C<load_module> lines at
the top of the config, in order.

=item C<TEST_NGINX_USE_HUP=1>

One master stays up and is HUPed between blocks.  The master is forced on.
After each HUP the runner waits until a hidden C<Host: Test-Nginx> C</ver>
location serves the new config's version and every old worker has exited.
A rejected config (C<[emerg]>) fails the block.

=item C<TEST_NGINX_NO_SHUFFLE=1>

Blocks run in file order, as with C<no_shuffle()> (upstream's switch).

=item C<TEST_NGINX_SHUFFLE_SEED=N>

The seed of the shuffle (this runner only).  Without it the seed is the pid,
as upstream.  Each shuffled run prints C<# shuffle seed: N> (a note), and a
failing one repeats it with C<diag>, which prove shows without C<-v>; the same
seed gives the same order for the same file.  C<TEST_NGINX_VERBOSE=1> also prints
the block order.

=item C<TEST_NGINX_NO_CLEAN=1>

nginx is left running after the last block.

=item C<TEST_NGINX_LOG_LEVEL>, C<TEST_NGINX_TIMEOUT>, C<TEST_NGINX_MASTER_PROCESS>

These are as upstream.

=back

On INT, TERM, HUP and PIPE the runner exits, and its END block stops nginx
(unless C<TEST_NGINX_NO_CLEAN> is set), as it does after C<die> or
C<BAIL_OUT>.

=head2 Differences from upstream

=over

=item *

The shuffle seed is printed and can be set (C<TEST_NGINX_SHUFFLE_SEED>).
Upstream seeds with its pid and prints nothing.

=item *

A client timeout produces no extra C<ERROR: client socket timed out> failure.
The reason is printed with C<diag>, and the status and body checks of that
request fail.  This keeps the assertion count fixed.

=item *

For C<no_error_log>, each pattern is exactly one assertion, named C<pattern
"X" should not match any line in error.log>, and the matching lines are shown
with C<diag>.  Upstream emits one failure per matching line.

=item *

The C<(req N)> suffix on test names is added only when C<repeat_each> is
greater than 1.

=item *

nginx is stopped at the end of each block rather than at the start of the
next.  C<access_log> is off.  Before starting nginx the runner waits up to
30 s (upstream retries the start for 30 s) for the port to be free, e.g.
of a background process an earlier block's nginx forked, which inherited the
listening socket, and then names the processes that hold it.  At exit it
stops only an nginx it started itself (upstream stops whatever the pid file
names).

=item *

In HUP mode the runner also waits until the old workers have exited;
upstream only waits until C</ver> serves the new config version.

=item *

C<TEST_NGINX_INIT_BY_LUA>, C<TEST_NGINX_USE_VALGRIND>, C<TEST_NGINX_USE_STAP>,
C<TEST_NGINX_CHECK_LEAK>, C<TEST_NGINX_BENCHMARK>, HTTP/2 and HTTP/3 are not
supported.

=back

=cut
