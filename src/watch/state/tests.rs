//! The hub's bookkeeping without a stream: fragment merging and its bound.

use super::*;
use crate::pb::etcdserverpb::ResponseHeader as PbResponseHeader;
use crate::pb::mvccpb::{Event, KeyValue};

fn created(watch_id: i64) -> PbWatchResponse {
    PbWatchResponse {
        created: true,
        watch_id,
        ..Default::default()
    }
}

fn fragment(watch_id: i64, value: usize, more: bool) -> PbWatchResponse {
    PbWatchResponse {
        watch_id,
        fragment: more,
        events: vec![Event {
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                value: vec![b'x'; value],
                mod_revision: 5,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

type Fixture = (
    State,
    mpsc::Receiver<PbWatchResponse>,
    Arc<Mutex<Option<String>>>,
    mpsc::UnboundedReceiver<PbWatchRequest>,
    Requests,
);

/// A state with one created watcher (etcd id 7) and its reader.
fn one_watcher(limit: MergeLimit) -> Fixture {
    let mut st = State {
        merge: limit,
        ..State::default()
    };
    let (tx, rx) = mpsc::channel(16);
    let ended = Arc::new(Mutex::new(None));
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let spec = Spec {
        create: Default::default(),
        buffer: 16,
        member: 0,
    };
    online(&mut st, Cmd::Add(1, spec, tx, ended.clone()), &req_tx);
    on_response(&mut st, created(7), &req_tx);
    (st, rx, ended, req_rx, req_tx)
}

#[test]
fn fragments_are_merged_into_one_response() {
    let (mut st, mut rx, _, _, req_tx) = one_watcher(MergeLimit::default());
    assert!(rx.try_recv().unwrap().created);
    on_response(&mut st, fragment(7, 10, true), &req_tx);
    on_response(&mut st, fragment(7, 10, true), &req_tx);
    assert!(rx.try_recv().is_err(), "a fragment was delivered alone");
    on_response(&mut st, fragment(7, 10, false), &req_tx);
    assert_eq!(rx.try_recv().unwrap().events.len(), 3);
    assert_eq!(st.live.len(), 1);
}

#[test]
fn a_merge_over_the_limit_ends_the_watcher_clearly() {
    let limit = MergeLimit {
        bytes: 100,
        events: 1000,
    };
    let (mut st, mut rx, ended, mut req_rx, req_tx) = one_watcher(limit);
    let _ = rx.try_recv();
    while req_rx.try_recv().is_ok() {}
    on_response(&mut st, fragment(7, 60, true), &req_tx);
    assert_eq!(st.live.len(), 1);
    on_response(&mut st, fragment(7, 60, true), &req_tx);
    assert!(st.live.is_empty(), "the watcher outlived the limit");
    let reason = ended.lock().unwrap().clone().unwrap_or_default();
    assert!(reason.starts_with("watch response too large"), "{reason}");
    assert!(matches!(
        req_rx.try_recv().ok().and_then(|r| r.request_union),
        Some(RequestUnion::CancelRequest(_))
    ));
    // too many events counts as well
    let limit = MergeLimit {
        bytes: usize::MAX,
        events: 2,
    };
    let (mut st, _rx, _, _, req_tx) = one_watcher(limit);
    for _ in 0..3 {
        on_response(&mut st, fragment(7, 1, true), &req_tx);
    }
    assert!(st.live.is_empty());
}

/// A created answer on a new stream, from `member` at store `revision`.
fn recreated(watch_id: i64, revision: i64, member: u64) -> PbWatchResponse {
    PbWatchResponse {
        header: Some(crate::pb::etcdserverpb::ResponseHeader {
            revision,
            member_id: member,
            ..Default::default()
        }),
        ..created(watch_id)
    }
}

/// One watcher that delivered up to revision 20 from member 0xa at raft
/// `term`, then saw its stream break; the create for the new stream is in
/// flight. `cluster`: the connection has several members.
fn delivered_then_broken_on(cluster: bool, term: u64) -> Fixture {
    let (mut st, mut rx, ended, req_rx, req_tx) = one_watcher(MergeLimit::default());
    st.cluster = cluster;
    let _ = rx.try_recv();
    let mut resp = fragment(7, 1, false);
    resp.header = recreated_at_term(7, 20, 0xa, term).header;
    if let Some(kv) = resp.events[0].kv.as_mut() {
        kv.mod_revision = 20;
    }
    on_response(&mut st, resp, &req_tx);
    assert_eq!(rx.try_recv().unwrap().events.len(), 1);
    st.new_stream();
    (st, rx, ended, req_rx, req_tx)
}

/// `delivered_then_broken_on` a single endpoint.
fn delivered_then_broken() -> Fixture {
    delivered_then_broken_on(false, 0)
}

/// Asserts the watcher got the hub's "went backwards" cancel (reported
/// like a compaction at `revision`) and is gone.
fn assert_went_back(st: &State, rx: &mut mpsc::Receiver<PbWatchResponse>, revision: i64) {
    let got = rx.try_recv().expect("no cancel for a store that went back");
    assert!(got.canceled && got.compact_revision == revision, "{got:?}");
    assert!(got.cancel_reason.contains("went backwards"), "{got:?}");
    assert!(st.live.is_empty());
}

#[test]
fn a_store_behind_the_watcher_on_its_own_member_went_backwards() {
    let (mut st, mut rx, _, _, req_tx) = delivered_then_broken();
    on_response(&mut st, recreated(8, 3, 0xa), &req_tx);
    assert_went_back(&st, &mut rx, 3);
}

#[test]
fn a_store_behind_the_watcher_on_another_member_is_a_follower_catching_up() {
    let (mut st, mut rx, _, _, req_tx) = delivered_then_broken();
    on_response(&mut st, recreated(8, 17, 0xb), &req_tx);
    assert!(
        rx.try_recv().is_err(),
        "a lagging follower ended the watcher"
    );
    assert_eq!(st.by_etcd.get(&8), Some(&1));
}

/// A new watcher from revision 21, learned from member `member` (0: none).
fn started_from(member: u64) -> Fixture {
    let mut st = State::default();
    let (tx, rx) = mpsc::channel(16);
    let ended = Arc::new(Mutex::new(None));
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let spec = Spec {
        create: crate::pb::etcdserverpb::WatchCreateRequest {
            start_revision: 21,
            ..Default::default()
        },
        buffer: 16,
        member,
    };
    online(&mut st, Cmd::Add(1, spec, tx, ended.clone()), &req_tx);
    (st, rx, ended, req_rx, req_tx)
}

#[test]
fn a_first_answer_behind_the_start_on_the_member_it_came_from_went_backwards() {
    let (mut st, mut rx, _, _, req_tx) = started_from(0xa);
    on_response(&mut st, recreated(7, 3, 0xa), &req_tx);
    assert_went_back(&st, &mut rx, 3);
}

#[test]
fn a_first_answer_behind_the_start_elsewhere_or_unhinted_keeps_watching() {
    // another member: a follower catching up; no hint: a caller watching
    // from a revision still to come
    for (hint, member) in [(0xa, 0xb), (0, 0xa)] {
        let (mut st, mut rx, _, _, req_tx) = started_from(hint);
        on_response(&mut st, recreated(7, 3, member), &req_tx);
        let got = rx.try_recv().expect("no created answer");
        assert!(got.created && !got.canceled, "{got:?}");
        assert_eq!(st.by_etcd.get(&7), Some(&1));
    }
}

#[test]
fn a_lagging_member_is_not_remembered_as_the_one_that_served() {
    // created on lagging 0xb (hint 0xa): 0xb is not adopted, so when the
    // stream is recreated on 0xb, still behind, it is no "went backwards"
    let (mut st, mut rx, _, _, req_tx) = started_from(0xa);
    on_response(&mut st, recreated(7, 3, 0xb), &req_tx);
    assert!(rx.try_recv().unwrap().created);
    st.new_stream();
    on_response(&mut st, recreated(8, 3, 0xb), &req_tx);
    assert!(
        rx.try_recv().is_err(),
        "a lagging follower ended the watcher"
    );
    assert_eq!(st.by_etcd.get(&8), Some(&1));
}

/// A created answer from `member` at store `revision` and raft `term`.
fn recreated_at_term(watch_id: i64, revision: i64, member: u64, term: u64) -> PbWatchResponse {
    let mut resp = recreated(watch_id, revision, member);
    resp.header = resp.header.map(|h| PbResponseHeader {
        raft_term: term,
        ..h
    });
    resp
}

#[test]
fn in_a_cluster_the_same_member_behind_under_the_same_term_is_catching_up() {
    // the member that served the watcher was restarted and missed writes:
    // etcd waits for the start revision while it catches up
    let (mut st, mut rx, _, _, req_tx) = delivered_then_broken_on(true, 5);
    on_response(&mut st, recreated_at_term(8, 12, 0xa, 6), &req_tx);
    assert!(
        rx.try_recv().is_err(),
        "a restarted member ended the watcher"
    );
    assert_eq!(st.by_etcd.get(&8), Some(&1));
}

#[test]
fn in_a_cluster_the_same_member_behind_under_a_lower_term_went_backwards() {
    // a cluster restored from backup starts a new raft history
    let (mut st, mut rx, _, _, req_tx) = delivered_then_broken_on(true, 5);
    on_response(&mut st, recreated_at_term(8, 3, 0xa, 2), &req_tx);
    assert_went_back(&st, &mut rx, 3);
}
