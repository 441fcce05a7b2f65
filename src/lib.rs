//! etcd_grpc: a native etcd v3 gRPC client for OpenResty/nginx workers that
//! answers Lua callers in the shapes of lua-resty-etcd's v3 HTTP mode.
//!
//! # Layout
//!
//! - [`error`]: the crate's one error type and its stable strings.
//! - [`pb`]: code generated from `proto/` (etcd's wire types).
//! - [`connection`]: endpoints to long-lived gRPC channels, failover (no
//!   services: it gives channels and failure reports).
//! - [`tls`]: TLS settings, rustls configuration, the `https://` connector.
//! - [`auth`]: Authenticate and the connection's token (single flight).
//! - [`notice`]: warnings queued for nginx's error log.
//! - [`metadata`]: a client's `extra_headers` as gRPC metadata.
//! - [`kv`], [`watch`], [`lease`], [`maintenance`]: one etcd service each
//!   ([`lease::keeper`]: background keepers on one LeaseKeepAlive stream).
//! - [`stream`]: the one supervisor of every long-lived stream (open with a
//!   deadline, jittered backoff, failover, shutdown, panic containment).
//! - [`mirror`]: the config mirror's loop (load, watch, resync) as typed
//!   deltas; the copy itself lives with the binding's caller.
//! - [`registry`]: the services' streams of a worker, keyed by connection
//!   and metadata.
//! - [`ops`]: the operations Lua can run, each from request to [`shape::Reply`].
//! - [`shape`]: typed results to gateway-shaped values (no Lua, unit-tested),
//!   one file per service, written through a [`sink`]: a value tree, or
//!   the Lua stack directly.
//! - [`runtime`], [`worker`]: the per-worker Tokio runtime, created after
//!   fork, and the state a worker shares between its clients.
//! - [`bridge`], [`doorbell`]: the non-blocking hand-off from Tokio to
//!   nginx's event loop.
//! - `lua` (feature `module`): the mlua binding, the only code that knows Lua.
//!
//! Only the binding knows Lua and only `runtime`/`worker`/`doorbell` know
//! nginx's process model; everything else is an ordinary async etcd client.

pub mod auth;
pub mod bridge;
pub mod connection;
pub mod doorbell;
pub mod driver;
pub mod error;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod metadata;
pub mod mirror;
pub mod notice;
pub mod ops;
pub mod pb;
pub mod registry;
pub mod runtime;
pub mod shape;
pub mod sink;
pub mod stream;
pub mod tls;
pub mod watch;
pub mod worker;

#[cfg(feature = "module")]
mod lua;

/// Entry point of `require "etcd_grpc_core"`: only assembles the exports.
#[cfg(feature = "module")]
#[mlua::lua_module]
fn etcd_grpc_core(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    lua::exports(lua)
}
