//! The config mirror's loop: load a prefix, watch it from the next revision
//! on the worker's shared Watch stream, and turn etcd's typed responses
//! into [`Delta`]s for whoever holds the copy. It holds no values itself:
//! the copy (and its one deserialized value per key) lives with the caller,
//! which pulls deltas with [`Feed::next`].
//!
//! The loop's invariant: every delta moves the copy from the revision it
//! reflects to a later one (or replaces it wholesale), and nothing between
//! the two is skipped.
//!
//! - A broken stream is the hub's business: it resumes the watcher from
//!   the revision after the last one delivered, so the feed sees no gap and
//!   does not reload.
//! - Progress notifications (`progress_notify` on the watcher) move the
//!   resume point of an idle prefix forward, so a compaction never passes
//!   it; the feed reports them as [`Delta::Progress`].
//! - A compaction past the resume point, or a store whose revision went
//!   backwards (the hub reports both as a canceled response with a compact
//!   revision), makes the next delta a full reload ([`Delta::Reset`] with
//!   `resync`), counted in [`Figures::resyncs`].
//! - Any other end of the watcher (refused, reader too slow) is reported as
//!   an error once; the next call watches again from the revision after the
//!   copy's, without a reload.
//! - A timeout of the caller's wait loses nothing: [`Feed::next`] is
//!   cancel-safe, so waiting idle costs no I/O and never re-creates a watch
//!   (APISIX re-created its watches on every read timeout).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::{
    RangeRequest as PbRangeRequest, WatchCreateRequest as PbWatchCreateRequest,
    WatchResponse as PbWatchResponse,
};
use crate::pb::mvccpb::{Event as PbEvent, KeyValue as PbKeyValue};
use crate::watch::{Hub, Spec, Watcher};

/// Responses a mirror's watcher may buffer: a mirror's applier drains in
/// batches, but a burst of writes must not end its watcher as too slow.
pub const BUFFER: usize = 65_536;

/// Events merged into one [`Delta::Events`] at most, so that one delta
/// never holds the applier for long.
pub const MAX_BATCH: usize = 4096;

/// What moves a copy forward.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// Replace the copy with `kvs`, which is the prefix at `revision`;
    /// `resync` is false for the first load.
    Reset {
        /// The revision the entries are from.
        revision: i64,
        /// Every key of the prefix.
        kvs: Vec<PbKeyValue>,
        /// Whether this reload replaced an earlier copy.
        resync: bool,
    },
    /// Apply `events` in order; the copy then reflects `revision`.
    Events {
        /// The revision the copy reflects after the events.
        revision: i64,
        /// etcd's events, in revision order.
        events: Vec<PbEvent>,
    },
    /// Nothing changed in the prefix up to `revision`.
    Progress {
        /// The revision the copy now reflects.
        revision: i64,
    },
}

/// What a feed counts (for `m:stats()`).
#[derive(Debug, Default)]
pub struct Figures {
    /// Full reloads after the first load.
    pub resyncs: AtomicU64,
    /// Events handed out.
    pub events: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Figures {
    /// The last failure the feed met, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, err: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.to_string());
    }
}

/// Where the loop is.
#[derive(Default)]
struct State {
    watcher: Option<Watcher>,
    /// The revision the caller's copy reflects once it applied what it got.
    revision: i64,
    /// Whether the copy must be (re)loaded before anything else.
    stale: bool,
    loads: u64,
    /// A response taken while batching that belongs to the next delta.
    held: Option<PbWatchResponse>,
}

/// One mirrored prefix's loop.
pub struct Feed {
    conn: Arc<Connection>,
    meta: Metadata,
    hub: Arc<Hub>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    state: tokio::sync::Mutex<State>,
    closed: tokio::sync::watch::Sender<bool>,
    figures: Figures,
}

impl Feed {
    /// A feed of `[key, range_end)` over `conn`, watching on `hub` (the
    /// worker's Watch stream for `conn` and `meta`). Nothing is sent yet.
    pub fn new(
        conn: Arc<Connection>,
        meta: Metadata,
        hub: Arc<Hub>,
        key: Vec<u8>,
        range_end: Vec<u8>,
    ) -> Feed {
        Feed {
            conn,
            meta,
            hub,
            key,
            range_end,
            state: tokio::sync::Mutex::new(State {
                stale: true,
                ..State::default()
            }),
            closed: tokio::sync::watch::channel(false).0,
            figures: Figures::default(),
        }
    }

    /// The feed's figures.
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// Ends the feed: a pending and every later [`Feed::next`] answers
    /// `closed`, and its watcher is canceled on etcd.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The next delta, waiting as long as it takes (the caller's deadline
    /// bounds it). Cancel-safe.
    pub async fn next(&self) -> Result<Delta> {
        let mut closed = self.closed.subscribe();
        tokio::select! {
            biased;
            _ = async { closed.wait_for(|c| *c).await.is_ok() } => {
                self.state.lock().await.watcher = None;
                Err(Error::Closed)
            }
            r = self.step() => r,
        }
    }

    async fn step(&self) -> Result<Delta> {
        let mut st = self.state.lock().await;
        loop {
            if st.stale {
                return self.load(&mut st).await;
            }
            let got = match st.held.take() {
                Some(r) => Ok(r),
                None => match st.watcher.as_ref() {
                    Some(w) => w.next().await,
                    None => {
                        let from = st.revision + 1;
                        st.watcher = Some(self.watch_from(from));
                        continue;
                    }
                },
            };
            let resp = match got {
                Ok(r) => r,
                Err(Error::Closed) => return Err(Error::Closed),
                Err(e) => return Err(self.lost_watcher(&mut st, e)),
            };
            if let Some(delta) = self.on_response(&mut st, resp)? {
                return Ok(delta);
            }
        }
    }

    /// What one response does: a delta to hand out, or none (go on).
    fn on_response(&self, st: &mut State, resp: PbWatchResponse) -> Result<Option<Delta>> {
        if resp.canceled && resp.compact_revision > 0 {
            self.figures.resyncs.fetch_add(1, Ordering::Relaxed);
            self.figures.record(&compacted_text(&resp));
            st.watcher = None;
            st.stale = true;
            return Ok(None);
        }
        if resp.canceled {
            let reason = if resp.cancel_reason.is_empty() {
                "watch canceled by etcd".to_string()
            } else {
                resp.cancel_reason
            };
            return Err(self.lost_watcher(st, Error::Ended(reason)));
        }
        if resp.created {
            return Ok(None);
        }
        if resp.events.is_empty() {
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            if rev <= st.revision {
                return Ok(None);
            }
            st.revision = rev;
            return Ok(Some(Delta::Progress { revision: rev }));
        }
        Ok(self.batch(st, resp))
    }

    /// The events of `first` and of every plain event response already
    /// buffered behind it (up to [`MAX_BATCH`]), as one delta.
    fn batch(&self, st: &mut State, first: PbWatchResponse) -> Option<Delta> {
        let mut events = Vec::new();
        let mut revision = st.revision;
        let mut next = Some(first);
        while let Some(resp) = next.take() {
            let plain = !resp.canceled && !resp.created;
            if !plain || (!events.is_empty() && events.len() + resp.events.len() > MAX_BATCH) {
                st.held = Some(resp);
                break;
            }
            if resp.events.is_empty() {
                // a progress notification behind the events: all seen
                revision = revision.max(resp.header.as_ref().map_or(0, |h| h.revision));
            }
            for ev in resp.events {
                let rev = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                // the watch starts after the copy's revision; never reapply
                if rev > st.revision {
                    revision = revision.max(rev);
                    events.push(ev);
                }
            }
            next = st.watcher.as_ref().and_then(Watcher::try_next);
        }
        if revision <= st.revision {
            return None;
        }
        st.revision = revision;
        self.figures
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Some(Delta::Events { revision, events })
    }

    /// The full load: the prefix as of now, then a watcher from the next
    /// revision.
    async fn load(&self, st: &mut State) -> Result<Delta> {
        let req = PbRangeRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            ..PbRangeRequest::default()
        };
        let resp = match crate::kv::range(&self.conn, &self.meta, req).await {
            Ok(r) => r,
            Err(e) => {
                self.figures.record(&e.to_string());
                return Err(e);
            }
        };
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        st.revision = revision;
        st.stale = false;
        st.held = None;
        st.watcher = Some(self.watch_from(revision + 1));
        let resync = st.loads > 0;
        st.loads += 1;
        Ok(Delta::Reset {
            revision,
            kvs: resp.kvs,
            resync,
        })
    }

    fn watch_from(&self, revision: i64) -> Watcher {
        self.hub.watch(Spec {
            create: PbWatchCreateRequest {
                key: self.key.clone(),
                range_end: self.range_end.clone(),
                start_revision: revision,
                progress_notify: true,
                ..PbWatchCreateRequest::default()
            },
            buffer: BUFFER,
        })
    }

    /// The watcher ended for `err`: recorded, and the next call watches
    /// again from the revision after the copy's.
    fn lost_watcher(&self, st: &mut State, err: Error) -> Error {
        self.figures.record(&err.to_string());
        st.watcher = None;
        st.held = None;
        err
    }
}

fn compacted_text(resp: &PbWatchResponse) -> String {
    if resp.cancel_reason.is_empty() {
        format!(
            "compacted: revision {} is gone, reloaded",
            resp.compact_revision
        )
    } else {
        format!("{}, reloaded", resp.cancel_reason)
    }
}
