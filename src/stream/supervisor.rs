//! The supervisor task: opens, serves, reopens and ends one session's
//! streams, containing its panics (the lifecycle `stream`'s doc names).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{stream_request, Backoff, Outbound, RequestStream, Session, Shutdown, OPEN_TIMEOUT};
use crate::connection::{Connection, Route};
use crate::metadata::Metadata;

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

/// How an open attempt ended.
enum Step<T> {
    Stop,
    Retry,
    Online(Box<(tonic::Streaming<T>, Route)>),
}

/// How serving an open stream ended.
enum Ended {
    /// The task should end.
    Stop,
    /// The stream is gone; `healthy` if etcd had answered on it (or the
    /// connection moved), so the next one opens without a backoff.
    Broken { healthy: bool },
}

impl<S: Session> Supervisor<S> {
    /// The loop proper; returns when the task should end.
    async fn run(&mut self, s: &mut S) {
        loop {
            if !self.wait_for_work(s).await {
                return;
            }
            let (out, requests) = mpsc::unbounded_channel();
            s.start(&out);
            let (stream, route) = match self.open(s, requests, &out).await {
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
            let healthy = match self.serve(s, stream, &route, &out).await {
                Ended::Stop => return,
                Ended::Broken { healthy } => healthy,
            };
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

    /// Serves commands offline while the session has nothing to open a
    /// stream for; false when the task should end.
    async fn wait_for_work(&mut self, s: &mut S) -> bool {
        while s.is_idle() {
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => s.offline(cmd),
                    None => return false,
                },
                () = self.shutdown.fired() => return false,
            }
        }
        true
    }

    /// Serves an open stream on `route` until it breaks, the connection
    /// leaves its member, or the task should end.
    async fn serve(
        &mut self,
        s: &mut S,
        mut stream: tonic::Streaming<S::Resp>,
        route: &Route,
        out: &Outbound<S::Req>,
    ) -> Ended {
        // The connection left this member (a call timed out on it, a
        // failure elsewhere): follow it now, without a backoff.
        let moved = self.conn.upgrade().map(|c| c.moved_from(route));
        let moved = async move {
            match moved {
                Some(m) => m.await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(moved);
        let mut healthy = false;
        loop {
            let tick = s.next_tick();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => s.online(cmd, out),
                    None => return Ended::Stop,
                },
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        healthy = true;
                        self.backoff.reset();
                        s.on_response(resp, out);
                        if let Some(reason) = s.reopen() {
                            let why = format!("etcdserver: invalid auth token ({reason})");
                            self.failed(route, tonic::Status::unauthenticated(why));
                            return Ended::Broken { healthy };
                        }
                    }
                    Ok(None) => return Ended::Broken { healthy },
                    Err(status) => {
                        self.failed(route, status);
                        return Ended::Broken { healthy };
                    }
                },
                () = tokio::time::sleep_until(tick.unwrap_or(far)), if tick.is_some() => {
                    s.tick(out);
                }
                () = &mut moved => return Ended::Broken { healthy: true },
                () = self.shutdown.fired() => return Ended::Stop,
            }
        }
    }

    /// Hands a stream's failure to the connection (which moves the next
    /// stream off the member if it was the transport).
    fn failed(&self, route: &Route, status: tonic::Status) {
        if let Some(c) = self.conn.upgrade() {
            c.failed(route, status);
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
