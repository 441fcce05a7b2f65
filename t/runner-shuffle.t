# Self-test: the runner shuffles blocks by default, as upstream does, prints
# the seed, replays an order from TEST_NGINX_SHUFFLE_SEED, keeps the
# repetitions of a block together, and honours no_shuffle() and
# TEST_NGINX_NO_SHUFFLE.
#
# Runs t/lib/fixtures/shuffle.tfix in child perls with the project's runner
# (RunnerFixture), so it checks that runner whichever Test::Nginx runs this
# file.
use v5.36;

use lib 't/lib';
use RunnerFixture;
use Test::More;

my $fixture = 't/lib/fixtures/shuffle.tfix';
my $run = RunnerFixture->new;

# The block order of one run ("3 1 5 2 4"), its seed line, and whether it passed.
sub order (%env) {
    my ($status, undef, $out) = $run->run($fixture, %env);
    my @seen;
    for my $n ($out =~ /^ok \d+ - \S*shuffle\.tfix TEST (\d+): \w+ - status code ok/mg) {
        push @seen, $n unless @seen && $seen[-1] == $n;    # req 0 and req 1
    }
    my ($seed) = $out =~ /^# shuffle seed: (\d+) /m;
    my $pairs = () = $out =~ /^ok \d+ - \S*shuffle\.tfix TEST \d+: \w+ - status code ok \(req [01]\)$/mg;
    return { order => "@seen", seed => $seed, ok => defined $status && $status == 0,
             pairs => $pairs, out => $out };
}

my $a = order(TEST_NGINX_SHUFFLE_SEED => 7);
ok($a->{ok}, 'seeded run passes') or diag($a->{out});
is($a->{seed}, 7, 'the seed from TEST_NGINX_SHUFFLE_SEED is printed');
is(join(' ', sort split ' ', $a->{order}), '1 2 3 4 5', 'every block ran once');
is($a->{pairs}, 10, 'both repetitions of every block ran');

my $b = order(TEST_NGINX_SHUFFLE_SEED => 7);
is($b->{order}, $a->{order}, "the same seed replays the same order ($a->{order})");

my %orders = map { (order(TEST_NGINX_SHUFFLE_SEED => $_)->{order} => 1) } 1 .. 4;
$orders{ $a->{order} } = 1;
cmp_ok(scalar keys %orders, '>', 1, 'other seeds give other orders: ' . join(', ', sort keys %orders));

my $c = order();
like($c->{seed} // '', qr/^\d+$/, 'without TEST_NGINX_SHUFFLE_SEED a seed is chosen and printed');

my $d = order(TEST_NGINX_NO_SHUFFLE => 1, TEST_NGINX_SHUFFLE_SEED => 7);
is($d->{order}, '1 2 3 4 5', 'TEST_NGINX_NO_SHUFFLE=1: file order');
ok(!defined $d->{seed}, 'TEST_NGINX_NO_SHUFFLE=1: no seed printed');

my $e = order(SHUFFLE_FIXTURE_NO_SHUFFLE => 1, TEST_NGINX_SHUFFLE_SEED => 7);
is($e->{order}, '1 2 3 4 5', 'no_shuffle(): file order');

my $f = order(TEST_NGINX_SHUFFLE_SEED => 'x');
ok(!$f->{ok}, 'a seed that is not an integer fails the run');
like($f->{out}, qr/TEST_NGINX_SHUFFLE_SEED must be a non-negative integer/, '... and says why');

ok(!$run->port_accepts, 'no nginx left listening on the fixture port');

done_testing();
