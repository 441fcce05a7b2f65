//! Which members a connection may use: its own suspect marks, the Lua
//! `health_check` module's view, and the failures it has not told Lua yet.
//!
//! Two sources decide whether member `i` is healthy, both cheap to ask
//! (an atomic load and a short lock, no Lua):
//! - **suspect marks**, set by this worker's own failure detection (a
//!   transport failure or a timed-out call) the moment it happens, for
//!   `fail_timeout`: the failing worker leaves the member at once;
//! - **the health_check view**: the Lua side pushes, at most every 100 ms
//!   and after every failed call, which members `health_check` holds
//!   unhealthy (shared-dict mode: as any worker reported them).
//!
//! Every suspect mark is also queued as a report; the Lua side drains the
//! queue into `health_check.report_failure`, so the module hears about
//! failures the streams found too. With a single endpoint nothing is ever
//! unhealthy: the only member is always tried again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default `fail_timeout` (lua-resty-etcd's 10 s).
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// Health of each member of one connection.
pub struct Health {
    n: usize,
    state: Mutex<State>,
    /// Members `health_check` holds unhealthy, one bit each (members past
    /// the 64th are never excluded by it).
    external: AtomicU64,
}

struct State {
    suspect_until: Vec<Option<Instant>>,
    fail_timeout: Duration,
    /// Indexes marked suspect that Lua has not been told of.
    reports: Vec<usize>,
}

impl Health {
    /// All `n` members healthy.
    pub fn new(n: usize) -> Health {
        Health {
            n,
            state: Mutex::new(State {
                suspect_until: vec![None; n],
                fail_timeout: FAIL_TIMEOUT,
                reports: Vec::new(),
            }),
            external: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks member `i` suspect for `fail_timeout` and queues a report for
    /// Lua. A no-op with a single member.
    pub fn mark(&self, i: usize) {
        if self.n < 2 || i >= self.n {
            return;
        }
        let mut st = self.state();
        let until = Instant::now() + st.fail_timeout;
        st.suspect_until[i] = Some(until);
        if !st.reports.contains(&i) {
            st.reports.push(i);
        }
    }

    /// Whether member `i` may be used now.
    pub fn healthy(&self, i: usize) -> bool {
        if self.n < 2 {
            return true;
        }
        if i < 64 && self.external.load(Ordering::Relaxed) & (1 << i) != 0 {
            return false;
        }
        let st = self.state();
        match st.suspect_until.get(i).copied().flatten() {
            Some(until) => Instant::now() >= until,
            None => true,
        }
    }

    /// The member to use, looking from `from` on (wrapping): the first
    /// one neither suspect nor unhealthy for `health_check`; when every
    /// member `health_check` allows is suspect, the one suspected longest
    /// ago (a cluster that was down entirely is tried again at once, not
    /// after `fail_timeout`); `None` when `health_check` holds every
    /// member unhealthy.
    pub fn pick(&self, from: usize) -> Option<usize> {
        if self.n < 2 {
            return Some(0);
        }
        let ext = self.external.load(Ordering::Relaxed);
        let allowed = |i: usize| i >= 64 || ext & (1 << i) == 0;
        let st = self.state();
        let now = Instant::now();
        let order = (0..self.n)
            .map(|k| (from + k) % self.n)
            .filter(|&i| allowed(i));
        let mut oldest: Option<(usize, Instant)> = None;
        for i in order {
            match st.suspect_until[i] {
                Some(until) if until > now => {
                    if oldest.is_none_or(|(_, u)| until < u) {
                        oldest = Some((i, until));
                    }
                }
                _ => return Some(i),
            }
        }
        oldest.map(|(i, _)| i)
    }

    /// Takes the view of Lua's `health_check`: `unhealthy[i]` for member
    /// `i`, and its `fail_timeout` (zero when it is disabled: suspect marks
    /// then expire at once).
    pub fn set_view(&self, unhealthy: &[bool], fail_timeout: Duration) {
        let bits = unhealthy
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, &u)| u)
            .fold(0u64, |acc, (i, _)| acc | (1 << i));
        self.external.store(bits, Ordering::Relaxed);
        let mut st = self.state();
        if fail_timeout < st.fail_timeout {
            // a shorter (or disabled) timeout applies to marks already set
            let now = Instant::now();
            for s in st.suspect_until.iter_mut().flatten() {
                *s = (*s).min(now + fail_timeout);
            }
        }
        st.fail_timeout = fail_timeout;
    }

    /// The members marked suspect since the last call (for Lua's
    /// `health_check.report_failure`).
    pub fn take_reports(&self) -> Vec<usize> {
        std::mem::take(&mut self.state().reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_member_is_never_unhealthy() {
        let h = Health::new(1);
        h.mark(0);
        h.set_view(&[true], FAIL_TIMEOUT);
        assert!(h.healthy(0));
        assert_eq!(h.pick(0), Some(0));
        assert!(h.take_reports().is_empty());
    }

    #[test]
    fn suspect_members_are_skipped_until_fail_timeout() {
        let h = Health::new(3);
        h.mark(0);
        assert_eq!(h.pick(0), Some(1));
        h.set_view(&[false, true, false], FAIL_TIMEOUT);
        assert_eq!(h.pick(0), Some(2));
        h.mark(2);
        // every allowed member suspect: the one suspected longest ago
        assert_eq!(h.pick(0), Some(0));
        h.set_view(&[true, true, true], FAIL_TIMEOUT);
        assert_eq!(h.pick(0), None);
        assert_eq!(h.take_reports(), vec![0, 2]);
        assert!(h.take_reports().is_empty());
        // disabled: marks expire at once, the view alone decides
        h.set_view(&[false, false, false], Duration::ZERO);
        assert_eq!(h.pick(1), Some(1));
    }
}
