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

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::connection::{Connection, Route};
use crate::error::Error;
use crate::metadata::Metadata;

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

/// Exponential backoff with jitter: each delay is drawn from the upper
/// half of the current step, so that the streams of many workers that
/// broke together do not reconnect in lockstep.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
    seed: u64,
}

impl Backoff {
    /// Steps from `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        static SALT: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ SALT.fetch_add(0x6a09_e667_f3bc_c909, Ordering::Relaxed);
        Backoff {
            base,
            max,
            step: base,
            seed: seed | 1,
        }
    }

    /// The next delay, in `[step/2, step]`; the step then doubles.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: plenty for jitter
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = (self.seed % 1024) as f64 / 2048.0 + 0.5;
        let delay = self.step.mul_f64(frac);
        self.step = (self.step * 2).min(self.max);
        delay
    }

    /// Back to the first step (after a healthy stream).
    pub fn reset(&mut self) {
        self.step = self.base;
    }
}

/// The signal that ends every supervised stream of a worker.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A fresh trigger and its signal.
pub fn shutdown_signal() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Fires the signal; every supervisor ends at its next await.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A signal to hand to a new supervisor.
    pub fn signal(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Resolves once the signal fired; never if its trigger is dropped
    /// unfired (handles still end their task by going away).
    pub async fn fired(&mut self) {
        if self.0.wait_for(|&v| v).await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}

/// Figures a supervisor keeps for introspection and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Streams asked for (opens attempted).
    pub opens: AtomicU64,
    /// Panics caught in the task.
    pub panics: AtomicU64,
}

/// Starts the supervisor task of `session` for the streams of `conn` that
/// carry `meta`; returns the sender of its commands. The task ends when
/// every clone of that sender is dropped. Must run inside the runtime.
pub fn spawn<S: Session>(
    session: S,
    conn: Weak<Connection>,
    meta: Metadata,
    shutdown: Shutdown,
    backoff: Backoff,
) -> (mpsc::UnboundedSender<S::Cmd>, Arc<Counters>) {
    let (tx, cmds) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let sup = Supervisor {
        conn,
        meta,
        cmds,
        shutdown,
        backoff,
        counters: counters.clone(),
    };
    tokio::spawn(supervise(session, sup));
    (tx, counters)
}

struct Supervisor<S: Session> {
    conn: Weak<Connection>,
    meta: Metadata,
    cmds: mpsc::UnboundedReceiver<S::Cmd>,
    shutdown: Shutdown,
    backoff: Backoff,
    counters: Arc<Counters>,
}

/// Runs the loop, containing its panics: the session hears of each one
/// and the loop starts over (after a backoff, so a panic that repeats
/// cannot spin).
async fn supervise<S: Session>(mut session: S, mut sup: Supervisor<S>) {
    loop {
        let run = AssertUnwindSafe(sup.run(&mut session)).catch_unwind().await;
        let panic = match run {
            Ok(()) => break,
            Err(panic) => panic,
        };
        sup.counters.panics.fetch_add(1, Ordering::Relaxed);
        let msg = crate::bridge::panic_error(panic).to_string();
        let contained = std::panic::catch_unwind(AssertUnwindSafe(|| session.on_panic(&msg)));
        let delay = sup.backoff.next_delay();
        if contained.is_err() || !sup.wait_offline(&mut session, delay).await {
            break;
        }
    }
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| session.on_shutdown()));
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

enum Step<T> {
    Stop,
    Retry,
    Online(Box<(tonic::Streaming<T>, Route)>),
}

impl<S: Session> Supervisor<S> {
    /// The loop proper; returns when the task should end.
    async fn run(&mut self, s: &mut S) {
        loop {
            while s.is_idle() {
                tokio::select! {
                    cmd = self.cmds.recv() => match cmd {
                        Some(cmd) => s.offline(cmd),
                        None => return,
                    },
                    () = self.shutdown.fired() => return,
                }
            }
            let (out, requests) = mpsc::unbounded_channel();
            s.start(&out);
            let (mut stream, route) = match self.open(s, requests, &out).await {
                Step::Stop => return,
                Step::Retry => {
                    let delay = self.backoff.next_delay();
                    if !self.wait_offline(s, delay).await {
                        return;
                    }
                    continue;
                }
                Step::Online(opened) => *opened,
            };
            let mut healthy = false;
            // The connection left this member (a call timed out on it, a
            // failure elsewhere): follow it now, without a backoff.
            let moved = self.conn.upgrade().map(|c| c.moved_from(&route));
            let moved = async move {
                match moved {
                    Some(m) => m.await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(moved);
            loop {
                let tick = s.next_tick();
                let far = Instant::now() + Duration::from_secs(3600);
                tokio::select! {
                    cmd = self.cmds.recv() => match cmd {
                        Some(cmd) => s.online(cmd, &out),
                        None => return,
                    },
                    msg = stream.message() => match msg {
                        Ok(Some(resp)) => {
                            healthy = true;
                            self.backoff.reset();
                            s.on_response(resp, &out);
                            if let Some(reason) = s.reopen() {
                                if let Some(c) = self.conn.upgrade() {
                                    let why = format!("etcdserver: invalid auth token ({reason})");
                                    c.failed(&route, tonic::Status::unauthenticated(why));
                                }
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            if let Some(c) = self.conn.upgrade() {
                                c.failed(&route, status);
                            }
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(tick.unwrap_or(far)), if tick.is_some() => {
                        s.tick(&out);
                    }
                    () = &mut moved => {
                        healthy = true;
                        break;
                    }
                    () = self.shutdown.fired() => return,
                }
            }
            // A stream that broke before etcd said anything on it waits
            // before the next one, so a member refusing streams is not
            // hammered.
            if !healthy {
                let delay = self.backoff.next_delay();
                if !self.wait_offline(s, delay).await {
                    return;
                }
            }
        }
    }

    /// Opens a stream on the connection's sync channel, serving commands
    /// meanwhile.
    async fn open(
        &mut self,
        s: &mut S,
        requests: mpsc::UnboundedReceiver<S::Req>,
        out: &Outbound<S::Req>,
    ) -> Step<S::Resp> {
        let Some(c) = self.conn.upgrade() else {
            return Step::Stop;
        };
        self.counters.opens.fetch_add(1, Ordering::Relaxed);
        // The stream's credentials, fresh at each (re)open; then its route.
        let meta = match c.authorize(&self.meta).await {
            Ok(meta) => meta,
            Err(e) => {
                s.on_auth_failed(&e);
                return Step::Retry;
            }
        };
        let Ok(route) = c.sync() else {
            return Step::Retry;
        };
        let outbound = RequestStream(requests);
        let call = S::call(
            route.channel.clone(),
            c.max_recv(),
            stream_request(&meta, outbound),
        );
        let deadline = tokio::time::sleep(OPEN_TIMEOUT);
        tokio::pin!(call, deadline);
        loop {
            tokio::select! {
                res = &mut call => {
                    return match res {
                        Ok(resp) => Step::Online(Box::new((resp.into_inner(), route))),
                        Err(status) => {
                            c.failed(&route, status);
                            Step::Retry
                        }
                    };
                }
                () = &mut deadline => {
                    c.report_failure(&route);
                    return Step::Retry;
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => s.online(cmd, out),
                    None => return Step::Stop,
                },
                () = self.shutdown.fired() => return Step::Stop,
            }
        }
    }

    /// Sleeps `delay` while serving commands offline; false when the task
    /// should end.
    async fn wait_offline(&mut self, s: &mut S, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => s.offline(cmd),
                    None => return false,
                },
                () = self.shutdown.fired() => return false,
            }
        }
    }
}

/// The error a handle reports when its stream's task panicked.
pub fn panicked(service: &str, msg: &str) -> Error {
    Error::Ended(format!("{service} stream failed: {msg}"))
}

#[cfg(test)]
mod tests;
