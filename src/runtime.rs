//! The per-process Tokio runtime: created lazily after fork, never reused
//! across fork, with every signal blocked in its threads.
//!
//! nginx forks its workers from a master that may have loaded this library
//! (`require` in `init_by_lua`). Threads do not survive `fork()`, so a runtime
//! inherited from the parent is a corpse: its tasks would never run. A
//! `pthread_atfork` child handler bumps [`fork_generation`]; a runtime built
//! in another generation is never touched again (it is leaked on purpose:
//! dropping it would try to join threads that no longer exist).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, Result};

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn on_fork_child() {
    // Async-signal-safe: a single atomic increment.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Installs the fork hook once per process image. Called when the library
/// is loaded, before any runtime can exist.
pub fn install_fork_hook() {
    ATFORK.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function that only touches
        // an atomic is sound; pthread_atfork has no other preconditions.
        unsafe {
            libc::pthread_atfork(None, None, Some(on_fork_child));
        }
    });
}

/// Changes in every child process forked after the library was loaded.
pub fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::SeqCst)
}

/// Blocks every signal in the calling thread, so that nginx's HUP/QUIT/CHLD
/// are always delivered to the nginx thread (and its signalfd), never to a
/// runtime thread that would not wake nginx's event loop.
fn block_all_signals() {
    // SAFETY: sigfillset initialises the set; pthread_sigmask only changes
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Builds the long-lived runtime of one nginx worker: one worker thread is
/// enough for an I/O-bound client and keeps the worker's footprint small.
pub fn build_worker_runtime() -> Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("etcd-grpc")
        .thread_keep_alive(Duration::from_secs(10))
        .on_thread_start(block_all_signals)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("failed to start runtime: {e}")))
}

/// Builds a runtime that lives on the calling thread only, for a single call
/// made where no worker exists yet (nginx's `init` phase, in the master).
/// Dropping it leaves no thread and no socket behind.
pub fn build_throwaway_runtime() -> Result<Runtime> {
    Builder::new_current_thread()
        .max_blocking_threads(1)
        .on_thread_start(block_all_signals)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("failed to start runtime: {e}")))
}
