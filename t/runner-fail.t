# Self-test: a failing block makes the run fail, a block that exceeds its
# `--- timeout` fails instead of hanging, an `eval` section evaluates in
# Test::Base::Filter (as upstream), and the output names the failing blocks
# and shows their error-log lines.
#
# Runs t/lib/fixtures/failing.tfix (not *.t, so `prove -r t/` skips it) in a
# child perl with its own port and server root, under a hard deadline.
use v5.36;

use lib 't/lib';
use RunnerFixture;
use Test::More;

my $fixture = 't/lib/fixtures/failing.tfix';
my $limit   = 60;    # hard deadline for the child (normally ~6 s)
my $bound   = 30;    # what "does not hang" means here

my $run = RunnerFixture->new(limit => $limit);
my ($status, $elapsed, $output) = $run->run($fixture);

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
like($output, qr/^not ok \d+ - \S*failing\.tfix TEST 4: [^\n]* - response_body - response is expected$/m,
     'TEST 4 fails: its eval section cannot see main::fixture_body unqualified');
like($output, qr/^#\s+eval filter: Undefined subroutine &Test::Base::Filter::fixture_body called/m,
     'the eval error names Test::Base::Filter, where upstream evaluates it too');
like($output, qr/^1\.\.9$/m, 'the fixture ran 3 + 2 + 2 + 2 assertions');

ok(!$run->port_accepts, 'no nginx left listening on the fixture port');
my $pid = $run->nginx_pid;
ok(!$pid || !kill(0, $pid), 'no nginx left running from the fixture server root');

done_testing();
