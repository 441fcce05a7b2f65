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
//!
//! What each response means is decided in `decide.rs`, without I/O; this
//! file only does the calls and keeps the figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::{
    RangeRequest as PbRangeRequest, WatchCreateRequest as PbWatchCreateRequest,
};
use crate::pb::mvccpb::{Event as PbEvent, KeyValue as PbKeyValue};
use crate::watch::{Hub, Spec, Watcher};

use decide::{Outcome, Track};

mod decide;

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

/// Where the loop is: the watcher (I/O) and what the decisions track.
#[derive(Default)]
struct State {
    watcher: Option<Watcher>,
    track: Track,
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
            state: tokio::sync::Mutex::new(State::default()),
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
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        loop {
            if st.track.needs_load() {
                return self.load(st).await;
            }
            let got = match st.track.take_held() {
                Some(r) => Ok(r),
                None => match st.watcher.as_ref() {
                    Some(w) => w.next().await,
                    None => {
                        st.watcher =
                            Some(self.watch_from(st.track.resume_from(), st.track.member()));
                        continue;
                    }
                },
            };
            let resp = match got {
                Ok(r) => r,
                Err(Error::Closed) => return Err(Error::Closed),
                Err(e) => return Err(self.lost_watcher(st, e)),
            };
            let watcher = st.watcher.as_ref();
            match st
                .track
                .on_response(resp, || watcher.and_then(Watcher::try_next))
            {
                Outcome::Skip => {}
                Outcome::Deliver(delta) => return Ok(self.counted(delta)),
                Outcome::Reload(why) => {
                    self.figures.resyncs.fetch_add(1, Ordering::Relaxed);
                    self.figures.record(&why);
                    st.watcher = None;
                }
                Outcome::Lost(e) => return Err(self.lost_watcher(st, e)),
            }
        }
    }

    fn counted(&self, delta: Delta) -> Delta {
        if let Delta::Events { events, .. } = &delta {
            self.figures
                .events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        delta
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
        let member = resp.header.as_ref().map_or(0, |h| h.member_id);
        let delta = st.track.loaded(revision, member, resp.kvs);
        st.watcher = Some(self.watch_from(st.track.resume_from(), st.track.member()));
        Ok(delta)
    }

    /// A watcher from `revision`, which was learned from `member`.
    fn watch_from(&self, revision: i64, member: u64) -> Watcher {
        self.hub.watch(Spec {
            member,
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
        st.track.lost();
        err
    }
}
