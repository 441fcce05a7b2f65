//! etcd's Watch service: every watcher of a connection (and metadata set)
//! on one bidirectional stream, owned by the runtime, resumed without loss
//! after a break.
//!
//! The stream's task is the shared supervisor ([`crate::stream`]): it
//! opens, backs off, fails over and contains panics; this module is the
//! Watch [`Session`] it drives. Creates are serialized: the next create is
//! sent only after etcd's `created` answer, so answers match creates by
//! order. Each watcher has a bounded buffer of etcd's typed responses
//! (shaped into gateway values only where replies are built, in `ops`); a
//! reader takes from it with a cancel-safe receive, so a read that times
//! out leaves nothing half-consumed. On a fresh stream every live watcher
//! is created again from the revision after the last one it delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::{
    WatchCreateRequest as PbWatchCreateRequest, WatchRequest as PbWatchRequest,
    WatchResponse as PbWatchResponse,
};
use crate::stream::{self, Backoff, Opened, Outbound, RequestStream, Session, Shutdown};
use state::{offline, on_response, online, send_next_create, State};

/// Messages a watcher's buffer holds by default before it is cancelled as
/// too slow (rather than growing memory without bound).
pub const DEFAULT_BUFFER: usize = 1024;

/// The largest buffer a caller may ask for: a million responses is more
/// than any reader needs to ride out a pause, and keeps one watcher from
/// claiming unbounded memory.
pub const MAX_BUFFER: usize = 1_000_000;

/// What a watcher asked for.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The create request as the caller gave it (start revision included).
    pub create: PbWatchCreateRequest,
    /// Messages buffered before the watcher is cancelled as too slow.
    pub buffer: usize,
    /// The member `create.start_revision` was learned from
    /// (`header.member_id`), 0 if none: a first answer from that same
    /// member with its store behind the start revision means the store
    /// went backwards (wiped or restored) since.
    pub member: u64,
}

/// The reading end of one watcher, held by Lua. Dropping it cancels the
/// watcher on etcd.
pub struct Watcher {
    id: u64,
    /// The id the caller gave (echoed in its responses, as the gateway
    /// gives every watch its own stream).
    watch_id: i64,
    rx: tokio::sync::Mutex<mpsc::Receiver<PbWatchResponse>>,
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
    pub async fn next(&self) -> Result<PbWatchResponse> {
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

    /// A response already buffered, without waiting (none if a read is
    /// in progress or the buffer is empty).
    pub fn try_next(&self) -> Option<PbWatchResponse> {
        self.rx.try_lock().ok()?.try_recv().ok()
    }

    /// The `watch_id` the caller asked for, for shaping its responses.
    pub fn watch_id(&self) -> i64 {
        self.watch_id
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
    Add(
        u64,
        Spec,
        mpsc::Sender<PbWatchResponse>,
        Arc<Mutex<Option<String>>>,
    ),
    Remove(u64),
}

/// The owner of one Watch stream (per connection and metadata set).
pub struct Hub {
    cmds: mpsc::UnboundedSender<Cmd>,
    next_id: AtomicU64,
    conn: std::sync::Weak<Connection>,
    /// Live watchers, as the hub task last counted them (introspection).
    live: Arc<std::sync::atomic::AtomicUsize>,
    counters: Arc<stream::Counters>,
}

impl Hub {
    /// Starts the hub task for the streams of `conn` that carry `meta`.
    /// Must run inside the runtime.
    pub fn start(
        conn: std::sync::Weak<Connection>,
        meta: Metadata,
        shutdown: Shutdown,
    ) -> Arc<Hub> {
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let session = WatchSession(State {
            counter: live.clone(),
            auth: conn
                .upgrade()
                .is_some_and(|c| c.config().credentials.is_some()),
            cluster: conn
                .upgrade()
                .is_some_and(|c| c.config().endpoints.len() > 1),
            ..State::default()
        });
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let (cmds, counters) = stream::spawn(session, conn.clone(), meta, shutdown, backoff);
        Arc::new(Hub {
            cmds,
            next_id: AtomicU64::new(1),
            conn,
            live,
            counters,
        })
    }

    /// Watchers currently live on this hub.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The supervisor's figures (opens, panics).
    pub fn counters(&self) -> &stream::Counters {
        &self.counters
    }

    /// Registers a watcher; its first message is etcd's `created` answer.
    pub fn watch(self: &Arc<Hub>, spec: Spec) -> Watcher {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(spec.buffer.max(1));
        let ended = Arc::new(Mutex::new(None));
        let watch_id = spec.create.watch_id;
        let _ = self.cmds.send(Cmd::Add(id, spec, tx, ended.clone()));
        Watcher {
            id,
            watch_id,
            rx: tokio::sync::Mutex::new(rx),
            ended,
            hub: self.clone(),
        }
    }
}

impl crate::registry::Hub for Hub {
    fn serves(&self, conn: &Arc<Connection>) -> bool {
        std::ptr::eq(self.conn.as_ptr(), Arc::as_ptr(conn))
    }
    fn live(&self) -> usize {
        Hub::live(self)
    }
}

type Requests = Outbound<PbWatchRequest>;

/// The Watch side of the supervised stream.
struct WatchSession(State);

impl Session for WatchSession {
    type Cmd = Cmd;
    type Req = PbWatchRequest;
    type Resp = PbWatchResponse;

    fn call(
        channel: tonic::transport::Channel,
        max_recv: usize,
        req: tonic::Request<RequestStream<PbWatchRequest>>,
    ) -> Opened<PbWatchResponse> {
        Box::pin(async move {
            WatchClient::new(channel)
                .max_decoding_message_size(max_recv)
                .watch(req)
                .await
        })
    }

    fn is_idle(&self) -> bool {
        self.0.live.is_empty()
    }

    fn offline(&mut self, cmd: Cmd) {
        offline(&mut self.0, cmd);
    }

    fn online(&mut self, cmd: Cmd, out: &Requests) {
        online(&mut self.0, cmd, out);
    }

    fn start(&mut self, out: &Requests) {
        // every live watcher is created again, in order
        self.0.new_stream();
        send_next_create(&self.0, out);
    }

    fn on_response(&mut self, resp: PbWatchResponse, out: &Requests) {
        on_response(&mut self.0, resp, out);
        self.0.count();
    }

    fn on_auth_failed(&mut self, err: &Error) {
        state::fail_auth(&mut self.0, err);
    }

    fn reopen(&mut self) -> Option<String> {
        self.0.reauth.take()
    }

    fn on_panic(&mut self, msg: &str) {
        let reason = stream::panicked("watch", msg).to_string();
        self.0.end_all(&format!("{reason}; watcher canceled"));
    }

    fn on_shutdown(&mut self) {
        self.0.end_all("closed");
    }
}

mod state;
#[cfg(test)]
mod tests;
