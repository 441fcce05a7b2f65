//! The feed's decisions, without I/O: what a load and each watch response
//! do to the copy's revision, when the copy must be reloaded and where a
//! watcher resumes. [`Feed`](super::Feed) owns the watcher and the calls;
//! [`Track`] owns everything it decides with, so unit tests can drive it
//! with plain responses.
//!
//! The invariant is the feed's: every delta moves the copy from the
//! revision it reflects to a later one (or replaces it wholesale), nothing
//! at or below the copy's revision is applied again, and nothing between
//! the two is skipped.

use super::{Delta, MAX_BATCH};
use crate::error::Error;
use crate::pb::etcdserverpb::WatchResponse as PbWatchResponse;
use crate::pb::mvccpb::KeyValue as PbKeyValue;

/// What one response means for the feed.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing for the copy (a created answer, a revision it already
    /// reflects): read on.
    Skip,
    /// Hand this delta out.
    Deliver(Delta),
    /// The watcher's history is gone (a compaction past the copy, or a
    /// store that went backwards): drop the watcher; the next step
    /// reloads. The text is for `last_error`.
    Reload(String),
    /// The watcher ended for another reason: report it once, drop the
    /// watcher, watch again from [`Track::resume_from`] without a reload.
    Lost(Error),
}

/// Where the copy is, as far as the feed knows.
#[derive(Debug)]
pub struct Track {
    /// The revision the caller's copy reflects once it applied what it got.
    revision: i64,
    /// Whether the copy must be (re)loaded before anything else.
    stale: bool,
    loads: u64,
    /// The member `revision` was learned from (`header.member_id`): a new
    /// watcher's first answer from it with a store behind the copy means
    /// etcd went backwards (the hub checks, given this as its hint).
    member: u64,
    /// A response taken while batching that belongs to the next delta.
    held: Option<PbWatchResponse>,
}

impl Default for Track {
    fn default() -> Self {
        Track {
            revision: 0,
            stale: true,
            loads: 0,
            member: 0,
            held: None,
        }
    }
}

impl Track {
    /// The revision the copy reflects (the feed itself only needs
    /// [`Track::resume_from`]).
    #[cfg(test)]
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Whether the next step is a full load.
    pub fn needs_load(&self) -> bool {
        self.stale
    }

    /// Where a new watcher starts: the revision after the copy's, so a
    /// broken or lost watcher loses nothing and repeats nothing.
    pub fn resume_from(&self) -> i64 {
        self.revision + 1
    }

    /// The member the copy's revision came from (0: unknown).
    pub fn member(&self) -> u64 {
        self.member
    }

    /// The response held back by the last batch, to be handled first.
    pub fn take_held(&mut self) -> Option<PbWatchResponse> {
        self.held.take()
    }

    /// A load answered by `member` with `kvs` at `revision`: the delta
    /// that replaces the copy (a resync unless it is the first load).
    pub fn loaded(&mut self, revision: i64, member: u64, kvs: Vec<PbKeyValue>) -> Delta {
        self.revision = revision;
        self.member = member;
        self.stale = false;
        self.held = None;
        let resync = self.loads > 0;
        self.loads += 1;
        Delta::Reset {
            revision,
            kvs,
            resync,
        }
    }

    /// The watcher failed or was dropped: what it held back goes with it.
    pub fn lost(&mut self) {
        self.held = None;
    }

    /// What `resp` does; `more` hands out responses already buffered
    /// behind it (never waiting), which a batch of events may take.
    pub fn on_response(
        &mut self,
        resp: PbWatchResponse,
        more: impl FnMut() -> Option<PbWatchResponse>,
    ) -> Outcome {
        // The hub reports a store that went backwards like a compaction.
        if resp.canceled && resp.compact_revision > 0 {
            self.stale = true;
            return Outcome::Reload(compacted_text(&resp));
        }
        if resp.canceled {
            let reason = if resp.cancel_reason.is_empty() {
                "watch canceled by etcd".to_string()
            } else {
                resp.cancel_reason
            };
            self.lost();
            return Outcome::Lost(Error::Ended(reason));
        }
        if resp.created {
            return Outcome::Skip;
        }
        if resp.events.is_empty() {
            // A progress notification: nothing changed up to its revision,
            // which keeps an idle prefix's resume point ahead of compactions.
            let rev = header_revision(&resp);
            if rev <= self.revision {
                return Outcome::Skip;
            }
            self.revision = rev;
            self.member = header_member(&resp);
            return Outcome::Deliver(Delta::Progress { revision: rev });
        }
        match self.batch(resp, more) {
            Some(d) => Outcome::Deliver(d),
            None => Outcome::Skip,
        }
    }

    /// The events of `first` and of every plain event response buffered
    /// behind it (up to [`MAX_BATCH`]), as one delta; the first response
    /// that does not fit is held for the next step.
    fn batch(
        &mut self,
        first: PbWatchResponse,
        mut more: impl FnMut() -> Option<PbWatchResponse>,
    ) -> Option<Delta> {
        let mut events = Vec::new();
        let mut revision = self.revision;
        let mut member = self.member;
        let mut next = Some(first);
        while let Some(resp) = next.take() {
            let plain = !resp.canceled && !resp.created;
            if !plain || (!events.is_empty() && events.len() + resp.events.len() > MAX_BATCH) {
                self.held = Some(resp);
                break;
            }
            let before = revision;
            if resp.events.is_empty() {
                // a progress notification behind the events: all seen
                revision = revision.max(header_revision(&resp));
            }
            let from = header_member(&resp);
            for ev in resp.events {
                let rev = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                // the watch starts after the copy's revision; never reapply
                if rev > self.revision {
                    revision = revision.max(rev);
                    events.push(ev);
                }
            }
            if revision > before {
                // the member the latest revision came from
                member = from;
            }
            next = more();
        }
        if revision <= self.revision {
            return None;
        }
        self.revision = revision;
        self.member = member;
        Some(Delta::Events { revision, events })
    }
}

fn header_revision(resp: &PbWatchResponse) -> i64 {
    resp.header.as_ref().map_or(0, |h| h.revision)
}

fn header_member(resp: &PbWatchResponse) -> u64 {
    resp.header.as_ref().map_or(0, |h| h.member_id)
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

#[cfg(test)]
mod tests;
