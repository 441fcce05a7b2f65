//! etcd's Watch service: every watcher of a connection on one bidirectional
//! stream, owned by the runtime, resumed without loss after a break.
//!
//! One hub task per connection holds the stream (on the sync channel).
//! Creates are serialized: the next create is sent only after etcd's
//! `created` answer, so answers match creates by order. Each watcher has a
//! bounded buffer; a reader takes from it with a cancel-safe receive, so a
//! read that times out leaves nothing half-consumed. When the stream
//! breaks, the hub reopens it with backoff and re-creates every live watcher
//! from the revision after the last one it delivered; after a transport
//! failure (HTTP/2 pings unanswered, a stream that never opens) it reopens
//! on the next endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::connection::{Connection, Route};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::{
    WatchCreateRequest as PbWatchCreateRequest, WatchRequest as PbWatchRequest,
    WatchResponse as PbWatchResponse,
};
use crate::shape::Value;
use state::{offline, on_response, online, send_next_create, State};

/// Messages a watcher's buffer holds by default before it is cancelled as
/// too slow (rather than growing memory without bound).
pub const DEFAULT_BUFFER: usize = 1024;

/// The largest buffer a caller may ask for: a million responses is more
/// than any reader needs to ride out a pause, and keeps one watcher from
/// claiming unbounded memory.
pub const MAX_BUFFER: usize = 1_000_000;

/// How long opening a Watch stream may take before its endpoint counts as
/// failed. etcd answers a create at once; HTTP/2 pings alone would take
/// 15 s (interval plus timeout) to give up on a frozen member, and never
/// on one that answers pings but not the stream. (1 s in unit tests, which
/// wait for it.)
const OPEN_TIMEOUT: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 10 });

/// What a watcher asked for.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The create request as the caller gave it (start revision included).
    pub create: PbWatchCreateRequest,
    /// Messages buffered before the watcher is cancelled as too slow.
    pub buffer: usize,
}

/// The reading end of one watcher, held by Lua. Dropping it cancels the
/// watcher on etcd.
pub struct Watcher {
    id: u64,
    rx: tokio::sync::Mutex<mpsc::Receiver<Value>>,
    ended: Arc<Mutex<Option<String>>>,
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watcher({})", self.id)
    }
}

impl Watcher {
    /// The next response, waiting as long as it takes (the caller's
    /// deadline bounds it). Cancel-safe: dropping the future loses nothing.
    pub async fn next(&self) -> Result<Value> {
        let mut rx = self.rx.lock().await;
        match rx.recv().await {
            Some(v) => Ok(v),
            None => Err(
                match self.ended.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(reason) => Error::Ended(reason),
                    None => Error::Closed,
                },
            ),
        }
    }

    /// Cancels the watcher; later reads return `closed`.
    pub fn cancel(&self) {
        let _ = self.hub.cmds.send(Cmd::Remove(self.id));
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.cancel();
    }
}

enum Cmd {
    Add(u64, Spec, mpsc::Sender<Value>, Arc<Mutex<Option<String>>>),
    Remove(u64),
}

/// The per-connection owner of the Watch stream.
pub struct Hub {
    cmds: mpsc::UnboundedSender<Cmd>,
    next_id: AtomicU64,
    /// Live watchers, as the hub task last counted them (introspection).
    live: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hub {
    /// Starts the hub task for the streams of `conn` that carry `meta`.
    /// Must run inside the runtime.
    pub fn start(conn: std::sync::Weak<Connection>, meta: Metadata) -> Arc<Hub> {
        let (cmds, rx) = mpsc::unbounded_channel();
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(run(conn, meta, rx, live.clone()));
        Arc::new(Hub {
            cmds,
            next_id: AtomicU64::new(1),
            live,
        })
    }

    /// Watchers currently live on this hub.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Registers a watcher; its first message is etcd's `created` answer.
    pub fn watch(self: &Arc<Hub>, spec: Spec) -> Watcher {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(spec.buffer.max(1));
        let ended = Arc::new(Mutex::new(None));
        let _ = self.cmds.send(Cmd::Add(id, spec, tx, ended.clone()));
        Watcher {
            id,
            rx: tokio::sync::Mutex::new(rx),
            ended,
            hub: self.clone(),
        }
    }
}

async fn run(
    conn: std::sync::Weak<Connection>,
    meta: Metadata,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    live: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut st = State {
        counter: live,
        auth: conn
            .upgrade()
            .is_some_and(|c| c.config().credentials.is_some()),
        ..State::default()
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        // Open a stream only when there is something to watch.
        while st.live.is_empty() {
            match cmds.recv().await {
                Some(cmd) => offline(&mut st, cmd),
                None => return,
            }
        }
        // A fresh stream: every live watcher is created again, in order.
        // The first create is queued before the call: etcd answers the
        // stream's headers only together with its first message.
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        st.new_stream();
        send_next_create(&st, &req_tx);
        let Some(opened) = open(&conn, &meta, req_rx, &mut st, &mut cmds, &req_tx).await else {
            return;
        };
        let (mut stream, route) = match opened {
            Ok(s) => s,
            Err(_) => {
                if !wait_retry(&mut st, &mut cmds, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => online(&mut st, cmd, &req_tx),
                    None => return,
                },
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        backoff = Duration::from_millis(50);
                        on_response(&mut st, resp, &req_tx);
                        st.count();
                        if let Some(reason) = st.reauth.take() {
                            // A create refused for the stream's token: drop
                            // it and reopen; every watcher resumes.
                            if let Some(c) = conn.upgrade() {
                                let why = format!("etcdserver: invalid auth token ({reason})");
                                c.failed(&route, tonic::Status::unauthenticated(why));
                            }
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        // A dead connection (e.g. a keepalive ping went
                        // unanswered) sends the new stream to the next
                        // endpoint; etcd's own refusals do not.
                        if let Some(c) = conn.upgrade() {
                            c.failed(&route, status);
                        }
                        break;
                    }
                },
            }
        }
    }
}

/// Sleeps `backoff` while still serving adds and removes; false when the
/// hub is gone.
async fn wait_retry(
    st: &mut State,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    backoff: Duration,
) -> bool {
    let sleep = tokio::time::sleep(backoff);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            cmd = cmds.recv() => match cmd {
                Some(cmd) => offline(st, cmd),
                None => return false,
            },
        }
    }
}

type Requests = mpsc::UnboundedSender<PbWatchRequest>;

/// Opens a Watch stream on the connection's sync channel, serving adds and
/// removes meanwhile; `None` when the hub or its connection is gone. The
/// stream opens with etcd's answer to the first create, so an etcd that
/// accepts the connection but never answers (a frozen process) is only
/// caught by a deadline: like a transport failure, it moves the next
/// attempt to the next endpoint.
async fn open(
    conn: &std::sync::Weak<Connection>,
    meta: &Metadata,
    requests: mpsc::UnboundedReceiver<PbWatchRequest>,
    st: &mut State,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    req_tx: &Requests,
) -> Option<Result<(tonic::Streaming<PbWatchResponse>, Route)>> {
    let c = conn.upgrade()?;
    // The stream's credentials, fresh at each (re)open; then its route.
    let meta = match c.authorize(meta).await {
        Ok(m) => m,
        Err(e) => {
            state::fail_auth(st, &e);
            return Some(Err(e));
        }
    };
    let route = match c.sync() {
        Ok(route) => route,
        Err(e) => return Some(Err(e)),
    };
    let outbound = futures::stream::unfold(requests, |mut rx| async move {
        rx.recv().await.map(|m| (m, rx))
    });
    let mut client =
        WatchClient::new(route.channel.clone()).max_decoding_message_size(c.max_recv());
    let call = client.watch(meta.request(outbound));
    let deadline = tokio::time::sleep(OPEN_TIMEOUT);
    tokio::pin!(call, deadline);
    loop {
        tokio::select! {
            res = &mut call => {
                return Some(match res {
                    Ok(resp) => Ok((resp.into_inner(), route)),
                    Err(status) => Err(c.failed(&route, status)),
                });
            }
            () = &mut deadline => {
                c.report_failure(&route);
                return Some(Err(Error::Timeout));
            }
            cmd = cmds.recv() => match cmd {
                Some(cmd) => online(st, cmd, req_tx),
                None => return None,
            },
        }
    }
}

mod state;
#[cfg(test)]
mod tests;
