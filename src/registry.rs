//! The services' long-lived streams of one worker, keyed by connection and
//! metadata (etcd applies a stream's metadata to everything on it, so
//! callers with different metadata never share one). Transport knows none
//! of this: a [`Connection`] gives channels and failover, the services own
//! their streams here.
//!
//! Entries are weak: a hub (its task and its stream) lives as long as its
//! handles (watchers, keepers), so metadata sets that stop being used do
//! not pile up streams. One shutdown trigger ends every supervisor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::connection::{Connection, Key};
use crate::metadata::Metadata;
use crate::stream::{shutdown_signal, ShutdownTrigger};

/// What the registry needs of a hub.
pub trait Hub: Send + Sync + 'static {
    /// Whether the hub streams over `conn` (a connection evicted and made
    /// again for the same config is another connection).
    fn serves(&self, conn: &Arc<Connection>) -> bool;
    /// Handles live on it.
    fn live(&self) -> usize;
}

/// The hubs of one service.
pub struct Registry<H> {
    map: Mutex<HashMap<(Key, Metadata), Weak<H>>>,
}

impl<H: Hub> Default for Registry<H> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<H: Hub> Registry<H> {
    /// The hub for `conn` and `meta`, made by `start` if there is none.
    pub fn get_or_start(
        &self,
        conn: &Arc<Connection>,
        meta: &Metadata,
        start: impl FnOnce() -> Arc<H>,
    ) -> Arc<H> {
        let key = (conn.config().key(), meta.clone());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hub) = map.get(&key).and_then(Weak::upgrade) {
            if hub.serves(conn) {
                return hub;
            }
        }
        map.retain(|_, hub| hub.strong_count() > 0);
        let hub = start();
        map.insert(key, Arc::downgrade(&hub));
        hub
    }

    /// Handles live over every hub.
    pub fn live(&self) -> usize {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter_map(Weak::upgrade)
            .map(|h| h.live())
            .sum()
    }

    /// Hubs (streams) alive.
    pub fn streams(&self) -> usize {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|h| h.strong_count() > 0).count()
    }
}

/// Every service's streams of a worker.
pub struct Streams {
    /// Watch hubs.
    pub watch: Registry<crate::watch::Hub>,
    /// LeaseKeepAlive hubs.
    pub lease: Registry<crate::lease::keeper::Keepers>,
    trigger: ShutdownTrigger,
}

impl Default for Streams {
    fn default() -> Self {
        let (trigger, _) = shutdown_signal();
        Streams {
            watch: Registry::default(),
            lease: Registry::default(),
            trigger,
        }
    }
}

impl Streams {
    /// The Watch hub of `conn` for `meta`, started on first use. Must be
    /// called inside the runtime.
    pub fn watch_hub(&self, conn: &Arc<Connection>, meta: &Metadata) -> Arc<crate::watch::Hub> {
        self.watch.get_or_start(conn, meta, || {
            crate::watch::Hub::start(
                Arc::downgrade(conn),
                meta.require_leader(),
                self.trigger.signal(),
            )
        })
    }

    /// The lease keepers' hub of `conn` for `meta`, started on first use.
    /// Must be called inside the runtime.
    pub fn keepers(
        &self,
        conn: &Arc<Connection>,
        meta: &Metadata,
    ) -> Arc<crate::lease::keeper::Keepers> {
        self.lease.get_or_start(conn, meta, || {
            crate::lease::keeper::Keepers::start(
                Arc::downgrade(conn),
                meta.clone(),
                self.trigger.signal(),
            )
        })
    }

    /// Watch streams opened again after the first open, over every hub
    /// (a figure for status pages).
    pub fn watch_reconnects(&self) -> u64 {
        let map = self.watch.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter_map(Weak::upgrade)
            .map(|h| {
                let opens = h
                    .counters()
                    .opens
                    .load(std::sync::atomic::Ordering::Relaxed);
                opens.saturating_sub(1)
            })
            .sum()
    }

    /// Renewals sent by every keepers' hub (figures).
    pub fn renewals(&self) -> u64 {
        let map = self.lease.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter_map(Weak::upgrade)
            .map(|h| h.figures().sent.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Ends every supervised stream (worker exit).
    pub fn shutdown(&self) {
        self.trigger.fire();
    }
}
