//! The state one nginx worker process keeps: its runtime, its bridge, its
//! doorbell and its shared connections. Created lazily on first use after
//! fork, so nothing of it ever exists in the master.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::bridge::Bridge;
use crate::connection::{Config, Connection, Key};
use crate::doorbell::{Doorbell, Listener};
use crate::driver::Spawner;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::ops::{self, Op};
use crate::registry::Streams;
use crate::runtime;
use crate::shape::Reply;

/// Everything a worker process shares between its Lua client objects.
pub struct Worker {
    generation: u64,
    pid: u32,
    /// Taken (and shut down) when the worker exits; `handle` then refuses
    /// new work with a closed runtime, which jobs report as `Closed`.
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
    bell: Arc<Doorbell>,
    bridge: Bridge<Reply>,
    /// Runs the bridge's jobs and the CRUD connections' HTTP/2 futures in
    /// one task (see [`crate::driver`]).
    driver: Spawner,
    connections: Mutex<HashMap<Key, Shared>>,
    /// The services' long-lived streams over those connections.
    streams: Streams,
    closed: AtomicBool,
    calls: AtomicU64,
}

/// A connection in the worker's map, with the last time a client asked
/// for it (clients cache their connection, so this is when the youngest
/// client using it was made).
struct Shared {
    conn: Arc<Connection>,
    asked: Instant,
}

/// How long a connection no client holds any more is kept, so that clients
/// made per request (a common lua-resty-etcd habit) reuse it rather than
/// dial again each time.
const IDLE_KEEP: Duration = Duration::from_secs(60);

/// How often the worker looks for such connections.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Test builds: the idle time in ms (`set_idle_keep`), else `IDLE_KEEP`.
#[cfg(feature = "test-hooks")]
static IDLE_KEEP_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Test builds: how many of the next doorbells to refuse.
#[cfg(feature = "test-hooks")]
static REFUSE_DOORBELLS: AtomicU64 = AtomicU64::new(0);

fn idle_keep() -> Duration {
    #[cfg(feature = "test-hooks")]
    {
        let ms = IDLE_KEEP_MS.load(Ordering::Relaxed);
        if ms != u64::MAX {
            return Duration::from_millis(ms);
        }
    }
    IDLE_KEEP
}

/// Test builds only: keep unused connections `ms` instead of `IDLE_KEEP`.
#[cfg(feature = "test-hooks")]
pub fn set_idle_keep(ms: u64) {
    IDLE_KEEP_MS.store(ms, Ordering::Relaxed);
}

/// Test builds only: the next `n` doorbells fail to be made.
#[cfg(feature = "test-hooks")]
pub fn refuse_doorbells(n: u64) {
    REFUSE_DOORBELLS.store(n, Ordering::Relaxed);
}

/// The worker of this process, if one was created in this fork generation.
/// Workers of earlier generations are leaked: their threads died in fork.
static CURRENT: Mutex<Option<&'static Worker>> = Mutex::new(None);

/// How many workers (runtimes) this process image has created.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// The current process's worker, created on first use.
pub fn current() -> Result<&'static Worker> {
    let mut guard = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    let generation = runtime::fork_generation();
    if let Some(w) = *guard {
        if w.generation == generation {
            return if w.closed.load(Ordering::Acquire) {
                Err(Error::Closed)
            } else {
                Ok(w)
            };
        }
    }
    let w: &'static Worker = Box::leak(Box::new(Worker::new(generation)?));
    CREATED.fetch_add(1, Ordering::Relaxed);
    *guard = Some(w);
    w.handle.spawn(sweeper(w));
    Ok(w)
}

/// The current worker only if it already exists (no creation).
pub fn existing() -> Option<&'static Worker> {
    let guard = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    guard.filter(|w| w.generation == runtime::fork_generation())
}

impl Worker {
    fn new(generation: u64) -> Result<Worker> {
        let rt = runtime::build_worker_runtime()?;
        let handle = rt.handle().clone();
        let bell = Arc::new(Doorbell::default());
        let driver = Spawner::start(&handle);
        Ok(Worker {
            generation,
            pid: std::process::id(),
            runtime: Mutex::new(Some(rt)),
            handle,
            bridge: Bridge::new(bell.clone()),
            driver,
            bell,
            connections: Mutex::new(HashMap::new()),
            streams: Streams::default(),
            closed: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        })
    }

    /// The shared connection for `config`, made on first use.
    pub fn connection(&self, config: &Config) -> Result<Arc<Connection>> {
        let key = config.key();
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get_mut(&key) {
            c.asked = Instant::now();
            return Ok(c.conn.clone());
        }
        // A new config often replaces an old one (endpoints rewritten after
        // new()): a good moment to let go of what nobody uses.
        evict_unused(&mut map);
        // tonic spawns the channel's worker task: it must see our runtime.
        let _ctx = self.handle.enter();
        let conn = Arc::new(Connection::driven(config.clone(), self.driver.clone())?);
        map.insert(
            key,
            Shared {
                conn: conn.clone(),
                asked: Instant::now(),
            },
        );
        Ok(conn)
    }

    /// Registers a watcher on the Watch stream of `conn` that carries
    /// metadata `meta`.
    pub fn watch(
        &self,
        conn: &Arc<Connection>,
        meta: &Metadata,
        spec: crate::watch::Spec,
    ) -> crate::watch::Watcher {
        // The hub task is spawned on first use: it must see our runtime.
        let _ctx = self.handle.enter();
        self.streams.watch_hub(conn, meta).watch(spec)
    }

    /// The Watch hub of `conn` for `meta` (the one every watcher and
    /// mirror of that pair shares), started on first use.
    pub fn watch_hub(&self, conn: &Arc<Connection>, meta: &Metadata) -> Arc<crate::watch::Hub> {
        let _ctx = self.handle.enter();
        self.streams.watch_hub(conn, meta)
    }

    /// Starts a keeper of lease `id` on the LeaseKeepAlive stream of `conn`
    /// that carries metadata `meta`.
    pub fn keep_lease(
        &self,
        conn: &Arc<Connection>,
        meta: &Metadata,
        id: i64,
    ) -> crate::lease::keeper::Keeper {
        // The keepers' task is spawned on first use: it must see our runtime.
        let _ctx = self.handle.enter();
        self.streams.keepers(conn, meta).keep(id)
    }

    /// Starts `job`; its result arrives through [`Worker::drain`].
    pub fn submit<F>(&self, timeout: Duration, job: F) -> Result<u64>
    where
        F: Future<Output = Result<Reply>> + Send + 'static,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bridge.submit(&self.driver, timeout, job)
    }

    /// Starts a watch read: like [`Worker::submit`], but an exiting worker
    /// ends it at once rather than after the exit grace (no news is worth
    /// waiting for then).
    pub fn submit_read<F>(&self, timeout: Duration, job: F) -> Result<u64>
    where
        F: Future<Output = Result<Reply>> + Send + 'static,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bridge
            .submit_with_grace(&self.driver, timeout, Duration::ZERO, job)
    }

    /// Runs `job` and blocks the calling thread until it ends.
    pub fn call_blocking<F>(&self, timeout: Duration, job: F) -> Result<Reply>
    where
        F: Future<Output = Result<Reply>> + Send + 'static,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bridge.call_blocking(&self.handle, timeout, job)
    }

    /// Hands every finished call to `each`.
    pub fn drain(&self, each: impl FnMut(u64, Result<Reply>)) -> usize {
        self.bridge.drain(each)
    }

    /// Binds a fresh doorbell socket and returns its path; the runtime
    /// accepts the dispatcher's connection on it, then removes the path.
    pub fn doorbell(&self) -> Result<PathBuf> {
        #[cfg(feature = "test-hooks")]
        if REFUSE_DOORBELLS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Internal(
                "failed to create doorbell: refused by test hook".into(),
            ));
        }
        let listener = Listener::bind()
            .map_err(|e| Error::Internal(format!("failed to create doorbell: {e}")))?;
        let path = listener.path().to_path_buf();
        let bell = self.bell.clone();
        self.handle.spawn(async move {
            let _ = listener.accept_into(&bell).await;
        });
        Ok(path)
    }

    /// Calls started and not yet completed, as the runtime counts them
    /// (what an exiting worker waits for).
    pub fn in_flight(&self) -> usize {
        self.bridge.in_flight()
    }

    /// Starts the exit: in-flight calls get a short grace, then end.
    pub fn begin_exit(&self) {
        self.bridge.begin_exit();
    }

    /// Ends the worker's runtime: every task is dropped (sockets closed),
    /// the doorbell is hung up, later calls fail with `closed`.
    pub fn shutdown(&self) {
        self.bridge.begin_exit();
        self.closed.store(true, Ordering::Release);
        self.streams.shutdown();
        self.bell.detach();
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let rt = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rt) = rt {
            rt.shutdown_timeout(Duration::from_millis(200));
        }
    }

    /// Figures for introspection.
    pub fn stats(&self) -> Stats {
        let (connections, authenticates, tls_handshakes) = {
            let map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            (
                map.len(),
                map.values().map(|c| c.conn.authenticates()).sum(),
                map.values().map(|c| c.conn.tls_handshakes()).sum(),
            )
        };
        Stats {
            pid: self.pid,
            runtimes_created: CREATED.load(Ordering::Relaxed),
            in_flight: self.bridge.in_flight(),
            calls: self.calls.load(Ordering::Relaxed),
            connections,
            watchers: self.streams.watch.live(),
            watch_streams: self.streams.watch.streams(),
            lease_keepers: self.streams.lease.live(),
            lease_streams: self.streams.lease.streams(),
            lease_renewals: self.streams.renewals(),
            reconnects: self.streams.watch_reconnects(),
            authenticates,
            tls_handshakes,
            exiting: self.bridge.is_exiting(),
        }
    }
}

/// Drops the connections that no client, watcher or call holds any more
/// and that no client asked for within the idle time. Dropping the last
/// `Arc` closes both channels (and their TCP connections).
fn evict_unused(map: &mut HashMap<Key, Shared>) {
    let keep = idle_keep();
    map.retain(|_, c| Arc::strong_count(&c.conn) > 1 || c.asked.elapsed() < keep);
}

/// Evicts unused connections now and then, so that they go even when no
/// new config comes along. Ends with the runtime.
async fn sweeper(w: &'static Worker) {
    loop {
        let every = SWEEP_EVERY.min(idle_keep().max(Duration::from_millis(100)));
        tokio::time::sleep(every).await;
        if w.closed.load(Ordering::Acquire) {
            return;
        }
        evict_unused(&mut w.connections.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// What `etcd_grpc.stats()` reports about the worker.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The pid the runtime was created in.
    pub pid: u32,
    /// Runtimes this process image created (1 in a healthy worker).
    pub runtimes_created: u64,
    /// Calls started and not yet completed.
    pub in_flight: usize,
    /// Calls started since the worker began.
    pub calls: u64,
    /// Distinct shared connections (endpoint sets) in use.
    pub connections: usize,
    /// Live watchers over all of them.
    pub watchers: usize,
    /// Watch streams open for them (one per connection and metadata set).
    pub watch_streams: usize,
    /// Live lease keepers.
    pub lease_keepers: usize,
    /// LeaseKeepAlive streams open for them (one per connection and
    /// metadata set).
    pub lease_streams: usize,
    /// Renewals the keepers sent.
    pub lease_renewals: u64,
    /// Watch streams opened again after a break (over every hub).
    pub reconnects: u64,
    /// Authenticate calls made by its connections (auth token refreshes).
    pub authenticates: u64,
    /// TLS handshakes made by its connections (one per TCP connection).
    pub tls_handshakes: u64,
    /// Whether the worker is exiting.
    pub exiting: bool,
}

/// One call where no worker may exist (nginx's `init` phase, in the
/// master): a runtime and a connection made for it alone, both completely
/// gone (no thread, no socket) when this returns.
pub fn call_once(config: Config, meta: Metadata, op: Op, timeout: Duration) -> Result<Reply> {
    let rt = runtime::build_throwaway_runtime()?;
    let out = rt.block_on(async move {
        let conn = Arc::new(Connection::new(config)?);
        let job = std::panic::AssertUnwindSafe(ops::execute(conn, meta, op));
        match tokio::time::timeout(timeout, futures::FutureExt::catch_unwind(job)).await {
            Ok(Ok(out)) => out,
            Ok(Err(panic)) => Err(crate::bridge::panic_error(panic)),
            Err(_) => Err(Error::Timeout),
        }
    });
    drop(rt);
    out
}
