//! Background lease keepers: every keeper of a connection (and metadata
//! set) renews its lease over one LeaseKeepAlive stream, driven by the
//! shared supervisor ([`crate::stream`]), never a timer or a connection
//! per lease.
//!
//! The invariant: **a keeper is `alive` until etcd says its lease is gone
//! (a renewal answered with TTL 0: expired, revoked, or unknown after a
//! reconnect), its handle cancels it, or the worker ends.** Each lease is
//! renewed at TTL/3 of the TTL etcd last answered (etcd's Go client's
//! cadence); several keepers of one lease share its renewals. On a fresh
//! stream every lease is renewed at once, so a keeper rides over breaks,
//! restarts and failover like a watcher does. A panic in the task resets
//! the schedule (every lease renewed again), it does not drop keepers.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::connection::Connection;
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::{
    LeaseKeepAliveRequest as PbLeaseKeepAliveRequest,
    LeaseKeepAliveResponse as PbLeaseKeepAliveResponse,
};
use crate::stream::{self, Backoff, Opened, Outbound, RequestStream, Session, Shutdown};

/// Where a keeper stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeeperState {
    /// Renewing.
    Alive,
    /// etcd says the lease is gone.
    Lost,
    /// Stopped by its handle (or the worker's exit); the lease was not
    /// revoked.
    Canceled,
}

impl KeeperState {
    /// `"alive"`, `"lost"` or `"canceled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeeperState::Alive => "alive",
            KeeperState::Lost => "lost",
            KeeperState::Canceled => "canceled",
        }
    }
}

/// How long a renewal waits for its answer before it is sent again, and
/// the shortest renewal period (TTL/3 of a 1 s lease would be 333 ms).
const RESEND: Duration = Duration::from_secs(1);
const MIN_PERIOD: Duration = Duration::from_millis(500);

/// Renewals due this close together go out in one batch.
const BATCH: Duration = Duration::from_millis(50);

/// The handle of one keeper, held by Lua. Dropping it cancels the keeper.
pub struct Keeper {
    id: u64,
    lease: i64,
    state: watch::Receiver<KeeperState>,
    /// Set by `cancel`, so the state reads `canceled` at once.
    canceled: std::sync::atomic::AtomicBool,
    hub: Arc<Keepers>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keeper({} for lease {})", self.id, self.lease)
    }
}

impl Keeper {
    /// The lease it renews.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Its state now.
    pub fn state(&self) -> KeeperState {
        let state = *self.state.borrow();
        if state == KeeperState::Alive && self.canceled.load(Ordering::Relaxed) {
            return KeeperState::Canceled;
        }
        state
    }

    /// Waits until it is no longer alive, or `timeout` passed; returns the
    /// state then.
    pub async fn wait(&self, timeout: Duration) -> KeeperState {
        if self.state() == KeeperState::Alive {
            let mut rx = self.state.clone();
            let _ = tokio::time::timeout(timeout, rx.wait_for(|s| *s != KeeperState::Alive)).await;
        }
        self.state()
    }

    /// Stops renewing, without revoking. Idempotent.
    pub fn cancel(&self) {
        if !self.canceled.swap(true, Ordering::Relaxed) {
            let _ = self.hub.cmds.send(Cmd::Remove(self.id));
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// What handles tell the task.
pub enum Cmd {
    /// A keeper for a lease, and where to publish its state.
    Add(u64, i64, watch::Sender<KeeperState>),
    /// A keeper canceled (or dropped).
    Remove(u64),
}

/// The owner of one LeaseKeepAlive stream (per connection and metadata).
pub struct Keepers {
    cmds: mpsc::UnboundedSender<Cmd>,
    next_id: AtomicU64,
    conn: Weak<Connection>,
    figures: Arc<Figures>,
    counters: Arc<stream::Counters>,
}

/// Figures the task publishes.
#[derive(Debug, Default)]
pub struct Figures {
    /// Keepers alive.
    pub keepers: AtomicUsize,
    /// Renewals sent since the stream's hub started.
    pub sent: AtomicU64,
}

impl Keepers {
    /// Starts the task for the keepers of `conn` with metadata `meta`.
    /// Must run inside the runtime.
    pub fn start(conn: Weak<Connection>, meta: Metadata, shutdown: Shutdown) -> Arc<Keepers> {
        let figures = Arc::new(Figures::default());
        let session = KeepSession {
            figures: figures.clone(),
            ..KeepSession::default()
        };
        // etcd's Go client reopens after 500 ms; jitter spreads workers
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let (cmds, counters) = stream::spawn(session, conn.clone(), meta, shutdown, backoff);
        Arc::new(Keepers {
            cmds,
            next_id: AtomicU64::new(1),
            conn,
            figures,
            counters,
        })
    }

    /// Starts a keeper of `lease`; it is `alive` until etcd says otherwise.
    pub fn keep(self: &Arc<Keepers>, lease: i64) -> Keeper {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(KeeperState::Alive);
        let _ = self.cmds.send(Cmd::Add(id, lease, tx));
        Keeper {
            id,
            lease,
            state: rx,
            canceled: std::sync::atomic::AtomicBool::new(false),
            hub: self.clone(),
        }
    }

    /// The task's figures.
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// The supervisor's figures (opens, panics).
    pub fn counters(&self) -> &stream::Counters {
        &self.counters
    }
}

impl crate::registry::Hub for Keepers {
    fn serves(&self, conn: &Arc<Connection>) -> bool {
        std::ptr::eq(self.conn.as_ptr(), Arc::as_ptr(conn))
    }
    fn live(&self) -> usize {
        self.figures.keepers.load(Ordering::Relaxed)
    }
}

/// One lease and the keepers that hold it.
struct Lease {
    keepers: Vec<(u64, watch::Sender<KeeperState>)>,
    /// When the next renewal goes out (its key in the schedule).
    due: Instant,
    /// The TTL etcd last answered, 0 before the first answer.
    ttl: i64,
}

type Requests = Outbound<PbLeaseKeepAliveRequest>;

/// The keepers' bookkeeping; no I/O.
#[derive(Default)]
struct KeepSession {
    leases: HashMap<i64, Lease>,
    /// Keeper id to lease id.
    owner: HashMap<u64, i64>,
    /// Renewals in time order.
    schedule: BTreeSet<(Instant, i64)>,
    figures: Arc<Figures>,
}

impl KeepSession {
    fn count(&self) {
        self.figures
            .keepers
            .store(self.owner.len(), Ordering::Relaxed);
    }

    fn reschedule(&mut self, id: i64, due: Instant) {
        if let Some(l) = self.leases.get_mut(&id) {
            self.schedule.remove(&(l.due, id));
            l.due = due;
            self.schedule.insert((due, id));
        }
    }

    fn add(&mut self, keeper: u64, id: i64, state: watch::Sender<KeeperState>) -> bool {
        self.owner.insert(keeper, id);
        let now = Instant::now();
        let fresh = !self.leases.contains_key(&id);
        let lease = self.leases.entry(id).or_insert_with(|| Lease {
            keepers: Vec::new(),
            due: now,
            ttl: 0,
        });
        lease.keepers.push((keeper, state));
        if fresh {
            self.schedule.insert((now, id));
        }
        self.count();
        fresh
    }

    fn remove(&mut self, keeper: u64) {
        let Some(id) = self.owner.remove(&keeper) else {
            return;
        };
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keepers.retain(|(k, state)| {
                if *k == keeper {
                    state.send_replace(KeeperState::Canceled);
                }
                *k != keeper
            });
            if lease.keepers.is_empty() {
                let due = lease.due;
                self.leases.remove(&id);
                self.schedule.remove(&(due, id));
            }
        }
        self.count();
    }

    /// Sends the renewal of `id` and expects its answer within [`RESEND`].
    fn renew(&mut self, id: i64, now: Instant, out: &Requests) {
        let _ = out.send(PbLeaseKeepAliveRequest { id });
        self.figures.sent.fetch_add(1, Ordering::Relaxed);
        self.reschedule(id, now + RESEND);
    }

    /// Ends every keeper of `id` as `state` and forgets the lease.
    fn end_lease(&mut self, id: i64, state: KeeperState) {
        if let Some(lease) = self.leases.remove(&id) {
            self.schedule.remove(&(lease.due, id));
            for (k, tx) in lease.keepers {
                tx.send_replace(state);
                self.owner.remove(&k);
            }
        }
        self.count();
    }
}

/// The renewal period for an answered TTL: TTL/3, at least [`MIN_PERIOD`].
fn period(ttl: i64) -> Duration {
    let ms = u64::try_from(ttl).unwrap_or(0).saturating_mul(1000) / 3;
    Duration::from_millis(ms).max(MIN_PERIOD)
}

impl Session for KeepSession {
    type Cmd = Cmd;
    type Req = PbLeaseKeepAliveRequest;
    type Resp = PbLeaseKeepAliveResponse;

    fn call(
        channel: tonic::transport::Channel,
        max_recv: usize,
        req: tonic::Request<RequestStream<PbLeaseKeepAliveRequest>>,
    ) -> Opened<PbLeaseKeepAliveResponse> {
        Box::pin(async move {
            LeaseClient::new(channel)
                .max_decoding_message_size(max_recv)
                .lease_keep_alive(req)
                .await
        })
    }

    fn is_idle(&self) -> bool {
        self.leases.is_empty()
    }

    fn offline(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Add(k, id, state) => {
                self.add(k, id, state);
            }
            Cmd::Remove(k) => self.remove(k),
        }
    }

    fn online(&mut self, cmd: Cmd, out: &Requests) {
        match cmd {
            Cmd::Add(k, id, state) => {
                if self.add(k, id, state) {
                    self.renew(id, Instant::now(), out);
                }
            }
            Cmd::Remove(k) => self.remove(k),
        }
    }

    fn start(&mut self, out: &Requests) {
        let now = Instant::now();
        let ids: Vec<i64> = self.leases.keys().copied().collect();
        for id in ids {
            self.renew(id, now, out);
        }
    }

    fn on_response(&mut self, resp: PbLeaseKeepAliveResponse, _out: &Requests) {
        if resp.ttl <= 0 {
            return self.end_lease(resp.id, KeeperState::Lost);
        }
        if let Some(l) = self.leases.get_mut(&resp.id) {
            l.ttl = resp.ttl;
            self.reschedule(resp.id, Instant::now() + period(resp.ttl));
        }
    }

    fn next_tick(&self) -> Option<Instant> {
        self.schedule.first().map(|(due, _)| *due)
    }

    fn tick(&mut self, out: &Requests) {
        let now = Instant::now();
        let horizon = now + BATCH;
        let due: Vec<i64> = self
            .schedule
            .iter()
            .take_while(|(at, _)| *at <= horizon)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            self.renew(id, now, out);
        }
    }

    fn on_panic(&mut self, _msg: &str) {
        // Rebuild the schedule from the leases: every one renewed again.
        let now = Instant::now();
        self.schedule.clear();
        for (id, l) in self.leases.iter_mut() {
            l.due = now;
            self.schedule.insert((now, *id));
        }
        self.owner = self
            .leases
            .iter()
            .flat_map(|(id, l)| l.keepers.iter().map(move |(k, _)| (*k, *id)))
            .collect();
        self.count();
    }

    fn on_shutdown(&mut self) {
        let ids: Vec<i64> = self.leases.keys().copied().collect();
        for id in ids {
            self.end_lease(id, KeeperState::Canceled);
        }
    }
}

#[cfg(test)]
mod tests;
