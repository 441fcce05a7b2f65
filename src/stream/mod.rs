//! One supervisor for every long-lived bidirectional stream (Watch,
//! LeaseKeepAlive): it owns the stream's task and its lifecycle, the
//! service's [`Session`] owns what goes over it.
//!
//! The invariant: **while a session has work, a stream is open or being
//! reopened, and commands are served at every moment** (open, online,
//! backing off). Every exit path is named:
//!
//! - *idle*: no stream is opened until the session has work;
//! - *open*: the stream must open within [`OPEN_TIMEOUT`] (etcd answers its
//!   headers with its first message, so a frozen member is caught only by
//!   this deadline); a late or failed open is a failure of the endpoint;
//! - *break*: the stream ended or failed; every stream error goes through
//!   [`Connection::failed`] (a transport failure moves the next stream to
//!   the next endpoint; auth refusals will flow there too), then the
//!   session [`Session::start`]s again on a fresh stream, after a jittered
//!   backoff unless the stream had been healthy;
//! - *end*: every command sender is gone, the connection is gone, or the
//!   shutdown signal fired: [`Session::on_shutdown`], the task ends;
//! - *panic*: a panic in the session or the stream code is caught here;
//!   [`Session::on_panic`] ends or resets what it held (never silently),
//!   then the supervisor starts over after a backoff.
//!
//! The outgoing request of every stream is built in one place,
//! [`stream_request`], from [`Connection::authorize`]'s metadata at each
//! (re)open; a failure to authorize goes to [`Session::on_auth_failed`].

mod backoff;
mod shutdown;
mod supervisor;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::Error;
use crate::metadata::Metadata;

pub use backoff::Backoff;
pub use shutdown::{shutdown_signal, Shutdown, ShutdownTrigger};
pub use supervisor::{spawn, Counters};

/// How long opening a stream may take before its endpoint counts as
/// failed. HTTP/2 pings alone would take 15 s (interval plus timeout) to
/// give up on a frozen member, and never on one that answers pings but not
/// the stream. (1 s in unit tests, which wait for it.)
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 10 });

/// Requests a session queues for the current stream.
pub type Outbound<T> = mpsc::UnboundedSender<T>;

/// The request stream handed to the gRPC call: what the session queued
/// on its [`Outbound`], in order.
pub struct RequestStream<T>(mpsc::UnboundedReceiver<T>);

impl<T> Stream for RequestStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// What a call returns: the response stream, or etcd's refusal.
pub type Opened<T> =
    BoxFuture<'static, std::result::Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>;

/// A service's side of one long-lived stream: its bookkeeping, no I/O.
pub trait Session: Send + 'static {
    /// What handles send to the task.
    type Cmd: Send + 'static;
    /// A message to etcd.
    type Req: Send + 'static;
    /// A message from etcd.
    type Resp: Send + 'static;

    /// Opens the stream on `channel` (the service's RPC).
    fn call(
        channel: Channel,
        max_recv: usize,
        req: tonic::Request<RequestStream<Self::Req>>,
    ) -> Opened<Self::Resp>;
    /// Whether there is nothing to open a stream for.
    fn is_idle(&self) -> bool;
    /// A command while no stream is open.
    fn offline(&mut self, cmd: Self::Cmd);
    /// A command while a stream is open (or opening).
    fn online(&mut self, cmd: Self::Cmd, out: &Outbound<Self::Req>);
    /// A fresh stream: queue what it starts with (etcd answers the
    /// stream's headers only together with its first message).
    fn start(&mut self, out: &Outbound<Self::Req>);
    /// A message from etcd.
    fn on_response(&mut self, resp: Self::Resp, out: &Outbound<Self::Req>);
    /// When [`Session::tick`] is due next while online (timed sends).
    fn next_tick(&self) -> Option<Instant> {
        None
    }
    /// The time [`Session::next_tick`] named has come.
    fn tick(&mut self, _out: &Outbound<Self::Req>) {}
    /// The stream's credentials could not be had (auth refused): the
    /// session may end its handles with `err`; the open is retried.
    fn on_auth_failed(&mut self, _err: &Error) {}
    /// After a response: etcd refused something for the stream's token
    /// (its reason), so the token is dropped and the stream reopened.
    fn reopen(&mut self) -> Option<String> {
        None
    }
    /// The task panicked: end or reset what the session holds, so that no
    /// handle waits forever or reads a bare `closed`.
    fn on_panic(&mut self, msg: &str);
    /// The task ends for good (shutdown, connection gone, no handles).
    fn on_shutdown(&mut self);
}

/// The one place a stream's outgoing request is built, on every (re)open,
/// from metadata [`Connection::authorize`] just gave (the auth token of
/// the moment included).
pub fn stream_request<T>(
    meta: &Metadata,
    outbound: RequestStream<T>,
) -> tonic::Request<RequestStream<T>> {
    meta.request(outbound)
}

/// The error a handle reports when its stream's task panicked.
pub fn panicked(service: &str, msg: &str) -> Error {
    Error::Ended(format!("{service} stream failed: {msg}"))
}

#[cfg(test)]
mod tests;
