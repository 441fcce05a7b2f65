# `make install` installs the release library, never the test build: after
# `make build-test` (which `make test` runs first), `make install DESTDIR=...`
# must install a library whose `test_hooks` is false, and nginx must load the
# installed files.
#
# The install runs once, before the blocks, into a temporary DESTDIR; its
# lualib becomes the blocks' cpath (ETCD_GRPC_CPATH, read by EtcdGrpcTest).
# `make install` builds target/release if it is missing or stale, which can
# take a few minutes on a cold tree (`make test` builds it beforehand).
use lib 't/lib';
use Test::Nginx::Socket::Lua 'no_plan';

use Cwd ();
use File::Basename ();
use File::Temp ();

BEGIN {
    my $root = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
    my $destdir = File::Temp::tempdir('etcd-grpc-install-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $prefix  = '/usr/local/openresty';
    my $log     = "$destdir/make-install.log";
    system("make -C '$root' install DESTDIR='$destdir' PREFIX='$prefix' > '$log' 2>&1");
    if ($? != 0) {
        my $out = do { local (@ARGV, $/) = $log; <> } // '';
        die "make install DESTDIR=$destdir failed (status $?):\n$out";
    }
    $ENV{TEST_NGINX_INSTALL_LUALIB} = "$destdir$prefix/lualib";
    $ENV{ETCD_GRPC_CPATH} = "$destdir$prefix/lualib/?.so";
}

use EtcdGrpcTest;

env_to_nginx('TEST_NGINX_INSTALL_LUALIB');

run_tests();

__DATA__

=== TEST 1: the installed etcd_grpc_core is the release build: no test hooks
--- config
    location = /t {
        content_by_lua_block {
            local lualib = os.getenv("TEST_NGINX_INSTALL_LUALIB")
            local so = package.searchpath("etcd_grpc_core", package.cpath)
            ngx.say("found in the install: ", so == lualib .. "/etcd_grpc_core.so")
            local core = require "etcd_grpc_core"
            ngx.say("test_hooks: ", core.test_hooks)
        }
    }
--- response_body
found in the install: true
test_hooks: false



=== TEST 2: the installed Lua files and library round-trip a key through etcd
--- config
    location = /t {
        content_by_lua_block {
            local lualib = os.getenv("TEST_NGINX_INSTALL_LUALIB")
            package.path = lualib .. "/?.lua;" .. package.path
            local etcd = require "etcd_grpc"
            ngx.say("etcd_grpc from the install: ",
                    package.loaded["etcd_grpc"] ~= nil
                    and package.searchpath("etcd_grpc", package.path) == lualib .. "/etcd_grpc.lua")
            local cli, err = etcd.new({ http_host = "$TEST_NGINX_ETCD_HOST" })
            if not cli then
                ngx.say("failed to create client: ", err)
                return
            end
            local res, err = cli:set("/install2/a", "installed")
            if not res then
                ngx.say("failed to set: ", err)
                return
            end
            res, err = cli:get("/install2/a")
            if not res then
                ngx.say("failed to get: ", err)
                return
            end
            ngx.say("value: ", res.body.kvs[1].value)
        }
    }
--- response_body
etcd_grpc from the install: true
value: installed
