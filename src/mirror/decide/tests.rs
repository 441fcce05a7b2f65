//! The feed's decisions driven with plain responses, as the hub delivers
//! them: no etcd, no stream, no Lua.

use std::collections::VecDeque;

use super::*;
use crate::pb::etcdserverpb::ResponseHeader as PbResponseHeader;
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::Event as PbEvent;

const MEMBER_A: u64 = 0xa;
const MEMBER_B: u64 = 0xb;

fn header(revision: i64, member_id: u64) -> Option<PbResponseHeader> {
    Some(PbResponseHeader {
        revision,
        member_id,
        ..Default::default()
    })
}

fn put(key: &str, rev: i64) -> PbEvent {
    PbEvent {
        kv: Some(PbKeyValue {
            key: key.into(),
            value: format!("v{rev}").into(),
            mod_revision: rev,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn delete(key: &str, rev: i64) -> PbEvent {
    PbEvent {
        r#type: EventType::Delete as i32,
        ..put(key, rev)
    }
}

/// An event response; its header is at its last event, as etcd sends it.
fn events(evs: Vec<PbEvent>) -> PbWatchResponse {
    let last = evs
        .last()
        .and_then(|e| e.kv.as_ref())
        .map_or(0, |kv| kv.mod_revision);
    PbWatchResponse {
        header: header(last, MEMBER_A),
        events: evs,
        ..Default::default()
    }
}

fn progress(rev: i64, member: u64) -> PbWatchResponse {
    PbWatchResponse {
        header: header(rev, member),
        ..Default::default()
    }
}

fn created(rev: i64, member: u64) -> PbWatchResponse {
    PbWatchResponse {
        created: true,
        ..progress(rev, member)
    }
}

fn canceled(compact_revision: i64, reason: &str) -> PbWatchResponse {
    PbWatchResponse {
        canceled: true,
        compact_revision,
        cancel_reason: reason.to_string(),
        ..Default::default()
    }
}

/// A track whose copy was loaded at `rev`.
fn loaded_at(rev: i64) -> Track {
    let mut t = Track::default();
    t.loaded(rev, MEMBER_A, Vec::new());
    t
}

/// `resp` with nothing buffered behind it.
fn one(t: &mut Track, resp: PbWatchResponse) -> Outcome {
    t.on_response(resp, || None)
}

/// `first` with `rest` buffered behind it; what was left unread.
fn with_buffered(
    t: &mut Track,
    first: PbWatchResponse,
    rest: Vec<PbWatchResponse>,
) -> (Outcome, usize) {
    let mut rest = VecDeque::from(rest);
    let out = t.on_response(first, || rest.pop_front());
    (out, rest.len())
}

/// The revision and the (key, revision) list of an events delta.
fn applied(out: Outcome) -> (i64, Vec<(String, i64)>) {
    let Outcome::Deliver(Delta::Events { revision, events }) = out else {
        panic!("not an events delta: {out:?}");
    };
    let list = events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect();
    (revision, list)
}

/// The revision and the resync flag of a reset delta.
fn reset_of(d: &Delta) -> (i64, bool) {
    let Delta::Reset {
        revision, resync, ..
    } = d
    else {
        panic!("not a reset: {d:?}");
    };
    (*revision, *resync)
}

fn is_skip(out: &Outcome) -> bool {
    matches!(out, Outcome::Skip)
}

#[test]
fn the_first_step_is_a_load_and_only_later_loads_are_resyncs() {
    let mut t = Track::default();
    assert!(t.needs_load());
    assert_eq!(reset_of(&t.loaded(10, MEMBER_A, Vec::new())), (10, false));
    assert!(!t.needs_load());
    assert_eq!((t.revision(), t.resume_from()), (10, 11));
    assert!(matches!(one(&mut t, canceled(20, "")), Outcome::Reload(_)));
    assert_eq!(reset_of(&t.loaded(25, MEMBER_A, Vec::new())), (25, true));
}

#[test]
fn events_are_applied_in_revision_order_and_move_the_copy() {
    let mut t = loaded_at(10);
    let out = one(
        &mut t,
        events(vec![put("/a", 11), delete("/b", 12), put("/a", 13)]),
    );
    let (rev, list) = applied(out);
    assert_eq!(rev, 13);
    assert_eq!(
        list,
        [("/a".into(), 11), ("/b".into(), 12), ("/a".into(), 13)]
    );
    assert_eq!((t.revision(), t.resume_from()), (13, 14));
}

#[test]
fn revisions_the_copy_already_reflects_are_never_applied_again() {
    let mut t = loaded_at(10);
    let (rev, list) = applied(one(
        &mut t,
        events(vec![put("/a", 9), put("/b", 10), put("/c", 11)]),
    ));
    assert_eq!((rev, list), (11, vec![("/c".into(), 11)]));
    // a response wholly at or below the copy is no delta at all
    assert!(is_skip(&one(&mut t, events(vec![put("/c", 11)]))));
    assert!(is_skip(&one(&mut t, events(vec![put("/x", 3)]))));
    assert_eq!(t.revision(), 11);
}

#[test]
fn a_progress_notification_moves_an_idle_prefix_ahead_of_compactions() {
    let mut t = loaded_at(10);
    let out = one(&mut t, progress(50, MEMBER_A));
    assert!(matches!(
        out,
        Outcome::Deliver(Delta::Progress { revision: 50 })
    ));
    // one at or behind the copy changes nothing
    assert!(is_skip(&one(&mut t, progress(50, MEMBER_A))));
    assert!(is_skip(&one(&mut t, progress(40, MEMBER_A))));
    assert_eq!(t.revision(), 50);
    // etcd compacts at 45 and the stream breaks: the watcher resumes past
    // the compaction, so etcd has nothing to cancel and no reload happens
    let compaction = 45;
    assert!(t.resume_from() > compaction);
    assert!(!t.needs_load());
}

#[test]
fn a_compaction_past_the_copy_means_one_reload() {
    let mut t = loaded_at(10);
    let out = one(&mut t, canceled(20, ""));
    let Outcome::Reload(why) = out else {
        panic!("{out:?}")
    };
    assert_eq!(why, "compacted: revision 20 is gone, reloaded");
    assert!(t.needs_load());
    assert_eq!(reset_of(&t.loaded(30, MEMBER_A, Vec::new())), (30, true));
    assert!(!t.needs_load(), "a second reload after one compaction");
    assert_eq!(t.resume_from(), 31);
}

#[test]
fn a_cancel_without_a_compact_revision_is_no_reload() {
    let mut t = loaded_at(10);
    let out = one(&mut t, canceled(0, "permission denied"));
    assert!(matches!(&out, Outcome::Lost(Error::Ended(r)) if r == "permission denied"));
    let out = one(&mut t, canceled(0, ""));
    assert!(matches!(&out, Outcome::Lost(Error::Ended(r)) if r == "watch canceled by etcd"));
    assert!(!t.needs_load());
    assert_eq!(t.resume_from(), 11);
}

#[test]
fn a_store_gone_backwards_on_its_member_means_one_reload_to_the_lower_revision() {
    // the hub reports it as a cancel whose compact revision is the store's,
    // below the copy's (src/watch/state.rs)
    let mut t = loaded_at(10);
    let back = canceled(3, "etcd revision went backwards: 3 after 10 was delivered");
    let Outcome::Reload(why) = one(&mut t, back) else {
        panic!("no reload")
    };
    assert!(why.starts_with("etcd revision went backwards"), "{why}");
    assert!(t.needs_load());
    assert_eq!(reset_of(&t.loaded(3, MEMBER_A, Vec::new())), (3, true));
    // the copy follows the restored store from there
    assert_eq!(applied(one(&mut t, events(vec![put("/a", 4)]))).0, 4);
}

#[test]
fn a_lagging_member_behind_the_copy_is_no_reload_and_repeats_nothing() {
    // after a failover the watcher is created on a follower a few
    // revisions behind; it catches up and etcd sends from the start revision
    let mut t = loaded_at(10);
    assert!(is_skip(&one(&mut t, created(8, MEMBER_B))));
    assert!(is_skip(&one(&mut t, progress(9, MEMBER_B))));
    assert!(!t.needs_load());
    assert_eq!(t.revision(), 10);
    let (rev, list) = applied(one(&mut t, events(vec![put("/a", 10), put("/a", 11)])));
    assert_eq!((rev, list), (11, vec![("/a".into(), 11)]));
}

#[test]
fn a_created_answer_is_no_delta() {
    let mut t = loaded_at(10);
    // etcd's created answer carries the store's current revision, which
    // may be ahead of the copy: that is no reason to move it
    assert!(is_skip(&one(&mut t, created(12, MEMBER_A))));
    assert_eq!(t.revision(), 10);
}

#[test]
fn a_lost_watcher_resumes_after_the_copy_without_a_reload() {
    let mut t = loaded_at(10);
    applied(one(&mut t, events(vec![put("/a", 11)])));
    // a response held back from a batch goes with the lost watcher: the
    // new one delivers it again from the resume point
    let big = events((13..13 + MAX_BATCH as i64).map(|r| put("/b", r)).collect());
    let (out, _) = with_buffered(&mut t, events(vec![put("/a", 12)]), vec![big]);
    assert_eq!(applied(out).0, 12);
    t.lost();
    assert!(
        t.take_held().is_none(),
        "a lost watcher's response was kept"
    );
    assert!(!t.needs_load());
    assert_eq!(t.resume_from(), 13);
}

#[test]
fn buffered_responses_are_merged_into_one_delta() {
    let mut t = loaded_at(10);
    let rest = vec![
        events(vec![put("/b", 12), put("/c", 13)]),
        progress(20, MEMBER_A),
    ];
    let (out, left) = with_buffered(&mut t, events(vec![put("/a", 11)]), rest);
    let (rev, list) = applied(out);
    assert_eq!(left, 0);
    // the progress notification behind the events moves the copy to 20
    assert_eq!(rev, 20);
    assert_eq!(list.len(), 3);
    assert_eq!(t.resume_from(), 21);
}

#[test]
fn a_cancel_behind_a_batch_is_held_for_the_next_step() {
    let mut t = loaded_at(10);
    let rest = vec![canceled(30, ""), events(vec![put("/z", 31)])];
    let (out, left) = with_buffered(&mut t, events(vec![put("/a", 11)]), rest);
    assert_eq!(applied(out), (11, vec![("/a".into(), 11)]));
    assert_eq!(left, 1, "the batch read past the cancel");
    let held = t.take_held().expect("the cancel was dropped");
    assert!(matches!(one(&mut t, held), Outcome::Reload(_)));
}

#[test]
fn a_load_drops_what_the_old_watcher_held() {
    let mut t = loaded_at(10);
    let rest = vec![created(11, MEMBER_A)];
    let (out, _) = with_buffered(&mut t, events(vec![put("/a", 11)]), rest);
    applied(out);
    // the load is the store as of its revision: nothing from before it
    // may be applied on top
    t.loaded(40, MEMBER_A, Vec::new());
    assert!(t.take_held().is_none(), "a held response outlived the load");
}

#[test]
fn a_batch_stops_at_max_batch_events() {
    let mut t = loaded_at(0);
    let first = events((1..MAX_BATCH as i64).map(|r| put("/a", r)).collect());
    let next = events(vec![
        put("/b", MAX_BATCH as i64),
        put("/b", MAX_BATCH as i64 + 1),
    ]);
    let (out, _) = with_buffered(&mut t, first, vec![next]);
    let (rev, list) = applied(out);
    assert_eq!((rev, list.len()), (MAX_BATCH as i64 - 1, MAX_BATCH - 1));
    let held = t
        .take_held()
        .expect("the response past the bound was dropped");
    assert_eq!(applied(one(&mut t, held)).1.len(), 2);
    // one response larger than the bound is still taken whole
    let huge = events(
        (0..MAX_BATCH as i64 + 5)
            .map(|r| put("/c", MAX_BATCH as i64 + 2 + r))
            .collect(),
    );
    assert_eq!(applied(one(&mut t, huge)).1.len(), MAX_BATCH + 5);
}

#[test]
fn the_member_is_the_one_the_latest_revision_came_from() {
    let from = |member: u64, evs: Vec<PbEvent>| {
        let mut r = events(evs);
        r.header = r.header.map(|h| PbResponseHeader {
            member_id: member,
            ..h
        });
        r
    };
    let mut t = Track::default();
    t.loaded(10, MEMBER_A, Vec::new());
    assert_eq!(t.member(), MEMBER_A);
    // a lagging member's answers move nothing, so they name no member
    assert!(is_skip(&one(&mut t, created(8, MEMBER_B))));
    assert!(is_skip(&one(&mut t, progress(9, MEMBER_B))));
    assert_eq!(t.member(), MEMBER_A);
    // a batch served partly by each: the last revision's member counts
    let rest = vec![from(MEMBER_B, vec![put("/b", 13)])];
    let (out, _) = with_buffered(&mut t, from(MEMBER_A, vec![put("/a", 11)]), rest);
    assert_eq!(applied(out).0, 13);
    assert_eq!(t.member(), MEMBER_B);
    // ... and a response of revisions already applied names none
    let rest = vec![from(MEMBER_B, vec![put("/b", 12)])];
    let (out, _) = with_buffered(&mut t, from(MEMBER_A, vec![put("/a", 14)]), rest);
    assert_eq!(applied(out).0, 14);
    assert_eq!(t.member(), MEMBER_A);
    assert!(matches!(
        one(&mut t, progress(20, MEMBER_B)),
        Outcome::Deliver(Delta::Progress { revision: 20 })
    ));
    assert_eq!(t.member(), MEMBER_B);
}
