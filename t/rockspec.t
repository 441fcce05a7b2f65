# The rockspec: `luarocks make` into a temporary tree builds with `make`
# and installs the façade and the release library where LuaJIT finds them.
use v5.36;
use Test::More;
use Cwd ();
use File::Basename ();
use File::Temp ();

my $root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
my ($luarocks) = grep { -x } map { "$_/luarocks" } split /:/, $ENV{PATH} // "";
plan skip_all => 'no luarocks (make deps installs it)' unless $luarocks;

my $tree = File::Temp::tempdir('etcd-grpc-rock-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $out = `cd '$root' && luarocks make --tree '$tree' etcd_grpc-0.1.0-1.rockspec 2>&1`;
is $?, 0, 'luarocks make succeeds' or diag $out;

my ($lua) = glob "$tree/share/lua/*/etcd_grpc.lua";
my ($so)  = glob "$tree/lib/lua/*/etcd_grpc_core.so";
ok $lua && -e $lua, 'etcd_grpc.lua is in the tree';
ok $so && -e $so, 'etcd_grpc_core.so is in the tree';
ok -e File::Basename::dirname($lua) . '/etcd_grpc/mirror.lua', 'with the etcd_grpc/ modules' if $lua;

my $ldir = File::Basename::dirname($lua // '');
my $cdir = File::Basename::dirname($so // '');
my $got = `luajit -e 'package.path = "$ldir/?.lua;" .. package.path
    package.cpath = "$cdir/?.so;" .. package.cpath
    local core = require "etcd_grpc_core"
    print(core.version, core.test_hooks)' 2>&1`;
like $got, qr/^\d+\.\d+\.\d+\s+false$/, 'LuaJIT loads the installed release library' or diag $got;

done_testing;
