//! The hub's bookkeeping: which watchers are live, what etcd calls each of
//! them on the current stream, where each would resume, and what every
//! response from etcd does to them. No I/O here: requests go out through
//! the stream's request channel. Responses stay etcd's typed messages;
//! shaping happens where replies are built.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Cmd, Requests, Spec};
use crate::pb::etcdserverpb::{
    watch_request::RequestUnion, WatchCancelRequest as PbWatchCancelRequest,
    WatchRequest as PbWatchRequest, WatchResponse as PbWatchResponse,
};

/// One live watcher, as the hub tracks it.
pub(super) struct Live {
    spec: Spec,
    tx: mpsc::Sender<PbWatchResponse>,
    ended: Arc<Mutex<Option<String>>>,
    /// etcd's id for it on the current stream, once created.
    etcd_id: Option<i64>,
    /// Where to resume: one past the last revision delivered.
    next_rev: i64,
    /// Whether the `created` answer was delivered (only the first is).
    acked: bool,
    /// Events of a fragmented response, until its last fragment.
    fragments: Vec<crate::pb::mvccpb::Event>,
    /// Encoded size of `fragments`, bounded by [`MergeLimit`].
    merged_bytes: usize,
    /// Whether its last create was refused for the stream's token and the
    /// stream reopened with a fresh one (reset once a create succeeds).
    reauthed: bool,
    /// The member whose answers it last had (`header.member_id`): a store
    /// behind `next_rev` means "went backwards" only on that member; on
    /// another one, after a failover, it is a follower catching up.
    member: u64,
    /// The highest raft term among those answers: in a cluster, the same
    /// member behind with a term as high is a restarted member catching
    /// up; a lower term is a new history (a cluster restored from backup).
    term: u64,
}

/// How much of a fragmented response is merged before the watcher is
/// ended instead: a fragmented revision (a huge transaction or range
/// delete) would otherwise grow memory without bound.
#[derive(Clone, Copy, Debug)]
pub(super) struct MergeLimit {
    pub(super) bytes: usize,
    pub(super) events: usize,
}

impl Default for MergeLimit {
    fn default() -> Self {
        MergeLimit {
            bytes: 256 * 1024 * 1024,
            events: 1_000_000,
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) live: HashMap<u64, Live>,
    pub(super) by_etcd: HashMap<i64, u64>,
    /// Watchers whose create was queued, in order; the head's is in flight.
    pub(super) pending: VecDeque<u64>,
    pub(super) counter: Arc<std::sync::atomic::AtomicUsize>,
    pub(super) merge: MergeLimit,
    /// Whether the stream carries a `user`/`password` token.
    pub(super) auth: bool,
    /// Whether the connection has several members (so one that is behind
    /// may be catching up; see `Live::term`).
    pub(super) cluster: bool,
    /// Set when a create was refused for the token: the hub drops the token
    /// and reopens the stream (etcd's reason).
    pub(super) reauth: Option<String>,
}

impl State {
    pub(super) fn count(&self) {
        self.counter.store(self.live.len(), Ordering::Relaxed);
    }

    /// Prepares for a fresh stream: etcd's ids are gone, and every live
    /// watcher is to be created again, in the order they were added.
    pub(super) fn new_stream(&mut self) {
        self.by_etcd.clear();
        self.pending = self.live.keys().copied().collect();
        self.pending.make_contiguous().sort_unstable();
        for w in self.live.values_mut() {
            w.etcd_id = None;
            w.fragments.clear();
            w.merged_bytes = 0;
        }
    }

    /// Ends every watcher with `reason` (their readers get it after what
    /// is buffered) and forgets them.
    pub(super) fn end_all(&mut self, reason: &str) {
        for w in self.live.values() {
            end(w, reason);
        }
        self.live.clear();
        self.by_etcd.clear();
        self.pending.clear();
        self.count();
    }
}

fn create_request(w: &Live) -> PbWatchRequest {
    let mut create = w.spec.create.clone();
    if w.next_rev > 0 {
        create.start_revision = w.next_rev;
    }
    // etcd assigns ids; the caller's watch_id is only echoed back to it.
    create.watch_id = 0;
    PbWatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    }
}

pub(super) fn send_next_create(st: &State, req_tx: &Requests) {
    if let Some(w) = st.pending.front().and_then(|id| st.live.get(id)) {
        let _ = req_tx.send(create_request(w));
    }
}

fn send_cancel(req_tx: &Requests, etcd_id: i64) {
    let _ = req_tx.send(PbWatchRequest {
        request_union: Some(RequestUnion::CancelRequest(PbWatchCancelRequest {
            watch_id: etcd_id,
        })),
    });
}

fn add(
    st: &mut State,
    id: u64,
    spec: Spec,
    tx: mpsc::Sender<PbWatchResponse>,
    ended: Arc<Mutex<Option<String>>>,
) {
    // test builds only: a key that makes the hub's task panic
    #[cfg(test)]
    if spec.create.key == super::tests::PANIC_KEY {
        panic!("deliberate panic in the watch state");
    }
    st.live.insert(
        id,
        Live {
            tx,
            ended,
            etcd_id: None,
            next_rev: 0,
            acked: false,
            fragments: Vec::new(),
            merged_bytes: 0,
            reauthed: false,
            member: spec.member,
            term: 0,
            spec,
        },
    );
    st.pending.push_back(id);
}

pub(super) fn offline(st: &mut State, cmd: Cmd) {
    match cmd {
        Cmd::Add(id, spec, tx, ended) => add(st, id, spec, tx, ended),
        Cmd::Remove(id) => {
            st.live.remove(&id);
            st.pending.retain(|p| *p != id);
        }
    }
    st.count();
}

pub(super) fn online(st: &mut State, cmd: Cmd, req_tx: &Requests) {
    match cmd {
        Cmd::Add(id, spec, tx, ended) => {
            add(st, id, spec, tx, ended);
            if st.pending.len() == 1 {
                send_next_create(st, req_tx);
            }
        }
        Cmd::Remove(id) => remove(st, id, req_tx),
    }
    st.count();
}

/// Forgets a watcher and cancels it on etcd. One whose create is in flight
/// stays queued (marked gone) so the answer still matches by order.
fn remove(st: &mut State, id: u64, req_tx: &Requests) {
    let Some(w) = st.live.remove(&id) else { return };
    if let Some(etcd_id) = w.etcd_id {
        st.by_etcd.remove(&etcd_id);
        send_cancel(req_tx, etcd_id);
    } else if st.pending.front() != Some(&id) {
        st.pending.retain(|p| *p != id);
    }
}

fn end(w: &Live, reason: &str) {
    *w.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
}

pub(super) fn on_response(st: &mut State, resp: PbWatchResponse, req_tx: &Requests) {
    if resp.created {
        return on_created(st, resp, req_tx);
    }
    let Some(&id) = st.by_etcd.get(&resp.watch_id) else {
        return;
    };
    let Some(w) = st.live.get_mut(&id) else {
        return;
    };
    if resp.fragment {
        w.merged_bytes += resp
            .events
            .iter()
            .map(prost::Message::encoded_len)
            .sum::<usize>();
        w.fragments.extend(resp.events);
        if w.merged_bytes > st.merge.bytes || w.fragments.len() > st.merge.events {
            end(
                w,
                &format!(
                    "watch response too large: fragments over {} bytes or {} events, watcher canceled",
                    st.merge.bytes, st.merge.events
                ),
            );
            send_cancel(req_tx, resp.watch_id);
            st.by_etcd.remove(&resp.watch_id);
            st.live.remove(&id);
        }
        return;
    }
    let mut resp = resp;
    if !w.fragments.is_empty() {
        let mut all = std::mem::take(&mut w.fragments);
        w.merged_bytes = 0;
        all.extend(resp.events);
        resp.events = all;
    }
    let (rev, member, term) = resp
        .header
        .as_ref()
        .map_or((0, 0, 0), |h| (h.revision, h.member_id, h.raft_term));
    if let Some(last) = resp.events.last().and_then(|e| e.kv.as_ref()) {
        // it served these events, so it holds everything delivered
        w.member = member;
        w.term = w.term.max(term);
        w.next_rev = last.mod_revision + 1;
    } else if !resp.canceled {
        // A progress notification: everything up to here was seen. Only a
        // member at least as far as the watcher is remembered (etcd sends
        // progress from a lagging one too).
        if rev + 1 >= w.next_rev {
            w.member = member;
            w.term = w.term.max(term);
        }
        w.next_rev = w.next_rev.max(rev + 1);
    }
    let (canceled, watch_id) = (resp.canceled, resp.watch_id);
    let ok = deliver(w, resp);
    if canceled || !ok {
        if !ok {
            send_cancel(req_tx, watch_id);
        }
        st.by_etcd.remove(&watch_id);
        st.live.remove(&id);
    }
}

/// Whether a create refusal may be the stream's token: etcd 3.5 names it,
/// 3.4 calls every refusal `permission denied`. Each watcher gets one fresh
/// token per refusal before a refusal is final.
fn token_refusal(st: &State, w: &Live, resp: &PbWatchResponse) -> bool {
    let reason = &resp.cancel_reason;
    st.auth
        && resp.canceled
        && !w.reauthed
        && (crate::error::is_token_text(reason) || reason.contains("permission denied"))
}

/// Authentication failed while (re)opening: every watcher ends with the
/// contract's error, since no stream can be opened for them.
pub(super) fn fail_auth(st: &mut State, err: &crate::error::Error) {
    if !matches!(err, crate::error::Error::AuthFailed { .. }) {
        return;
    }
    for (_, w) in st.live.drain() {
        end(&w, &err.to_string());
    }
    st.pending.clear();
    st.count();
}

fn on_created(st: &mut State, resp: PbWatchResponse, req_tx: &Requests) {
    let Some(id) = st.pending.pop_front() else {
        return;
    };
    if st
        .live
        .get(&id)
        .is_some_and(|w| token_refusal(st, w, &resp))
    {
        if let Some(w) = st.live.get_mut(&id) {
            w.reauthed = true;
        }
        st.reauth = Some(resp.cancel_reason);
        return;
    }
    if let Some(w) = st.live.get_mut(&id) {
        w.reauthed = false;
        if w.next_rev == 0 {
            // Resume point for a watch that has seen nothing yet.
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            w.next_rev = if w.spec.create.start_revision > 0 {
                w.spec.create.start_revision
            } else {
                rev + 1
            };
        }
        let first = !w.acked;
        w.acked = true;
        let mut resp = resp;
        let (current, member, term) = resp
            .header
            .as_ref()
            .map_or((0, 0, 0), |h| (h.revision, h.member_id, h.raft_term));
        // etcd waits for a start revision still ahead of a lagging member,
        // so only a member known to have held what the watcher delivered
        // (or, before anything was, the one the caller's start revision came
        // from) can have gone back, and in a cluster only with a lower raft
        // term (a restarted member catches up under the cluster's term). A
        // member still behind is not remembered: it is a follower catching
        // up, or a revision to come.
        let known = w.member != 0;
        let behind = current + 1 < w.next_rev;
        let new_history = !st.cluster || term < w.term;
        let went_back = known && member == w.member && behind && new_history && !resp.canceled;
        if !behind {
            w.member = member;
            w.term = w.term.max(term);
        }
        if went_back {
            // The store is behind what this watcher already delivered: etcd
            // was wiped or restored. Report it like a compaction, so the
            // caller resyncs, and end the watcher.
            resp.canceled = true;
            resp.compact_revision = current.max(1);
            resp.cancel_reason = format!(
                "etcd revision went backwards: {current} after {} was delivered",
                w.next_rev - 1
            );
        }
        let (canceled, watch_id) = (resp.canceled, resp.watch_id);
        let ok = if first || canceled {
            deliver(w, resp)
        } else {
            true
        };
        if canceled || !ok {
            if went_back || !canceled {
                send_cancel(req_tx, watch_id);
            }
            st.live.remove(&id);
        } else {
            w.etcd_id = Some(watch_id);
            st.by_etcd.insert(watch_id, id);
        }
    } else if !resp.canceled {
        // Removed while its create was in flight.
        send_cancel(req_tx, resp.watch_id);
    }
    send_next_create(st, req_tx);
}

/// Hands a response to the watcher's buffer; false if the buffer is full
/// (the watcher is then ended as too slow) or the reader is gone.
fn deliver(w: &Live, resp: PbWatchResponse) -> bool {
    match w.tx.try_send(resp) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            end(w, "watcher buffer full: reader too slow, watcher canceled");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests;
