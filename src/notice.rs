//! Warnings the runtime wants in nginx's error log. Rust cannot call
//! `ngx.log`, so they queue here and the Lua bridge writes them at WARN
//! level after each call it completes.
//!
//! Only operational facts go here (an unsafe setting, a refused password),
//! phrased by their producer; never a password, key or token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static QUEUE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Whether the queue may hold something: the per-call check is one load.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Queues one warning.
pub fn warn(msg: String) {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
    PENDING.store(true, Ordering::Release);
}

/// Takes every queued warning (empty, without locking, when none).
pub fn take() -> Vec<String> {
    if !PENDING.swap(false, Ordering::AcqRel) {
        return Vec::new();
    }
    std::mem::take(&mut *QUEUE.lock().unwrap_or_else(|p| p.into_inner()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn queued_then_taken_once() {
        super::warn("a".into());
        super::warn("b".into());
        let got = super::take();
        assert!(
            got.ends_with(&["a".to_string(), "b".to_string()]),
            "{got:?}"
        );
        assert!(super::take().is_empty());
    }
}
