//! One Tokio task that runs a worker's calls and the HTTP/2 machinery of
//! its CRUD connection: the calls the bridge submits, and the tasks that
//! tonic and hyper spawn for that connection (tonic's buffer worker,
//! hyper's dispatcher and connection task, one request-body pipe and one
//! response waiter per call), given to it as their executor.
//!
//! Why one task: tokio's LIFO slot runs the task a task wakes right after
//! it. With a task per call and per hyper future, every call ran its
//! request through the whole stack on its own (call, buffer, dispatcher,
//! body pipe, connection task) and h2 flushed each call's frames in a
//! write of its own: one `writev` per call at any concurrency, where a
//! one-thread raw client writes a batch of calls at once. Inside one task
//! the wake-ups between these futures are `FuturesUnordered` re-queues,
//! taken in the order they happened, so the calls of a burst all reach h2
//! before its connection future runs, and it writes them together. The
//! nginx thread also wakes the runtime once per burst: waking a task that
//! is already scheduled costs an atomic swap.
//!
//! Each future runs under a panic guard: a panic ends that future alone,
//! as it would end its own task, never the others.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A future as the driver runs it.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How many times one poll of the driver takes newly spawned futures and
/// runs what is ready before it yields to the runtime's other tasks.
const PASSES: usize = 4;

/// Hands futures to a driver task. Cheap to clone; the driver ends once
/// every spawner is dropped and every future it holds has ended.
#[derive(Clone)]
pub struct Spawner {
    queue: mpsc::UnboundedSender<Job>,
}

impl Spawner {
    /// Spawns a driver on `rt` and returns its spawner.
    pub fn start(rt: &Handle) -> Spawner {
        let (queue, jobs) = mpsc::unbounded_channel();
        rt.spawn(Driver {
            jobs,
            running: FuturesUnordered::new(),
            open: true,
        });
        Spawner { queue }
    }

    /// Runs `fut` on the driver. False when the driver is gone (its
    /// runtime was shut down): `fut` is dropped unrun.
    pub fn spawn<F>(&self, fut: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guarded = AssertUnwindSafe(fut).catch_unwind().map(|_| ());
        self.queue.send(Box::pin(guarded)).is_ok()
    }
}

/// tonic and hyper spawn their connection's futures through this.
impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // Refused only while the runtime shuts down, when nothing of the
        // connection will run again anyway.
        let _ = self.spawn(fut);
    }
}

/// The task: takes every future spawned since it last ran, then polls the
/// ready ones, new ones first.
struct Driver {
    jobs: mpsc::UnboundedReceiver<Job>,
    running: FuturesUnordered<Job>,
    open: bool,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = &mut *self;
        for _ in 0..PASSES {
            let mut taken = 0;
            while me.open {
                match me.jobs.poll_recv(cx) {
                    Poll::Ready(Some(job)) => {
                        me.running.push(job);
                        taken += 1;
                    }
                    Poll::Ready(None) => me.open = false,
                    // Also when tokio's cooperative budget is spent: the
                    // queue then wakes us again, after other tasks ran.
                    Poll::Pending => break,
                }
            }
            // FuturesUnordered returns Pending after one pass over its
            // futures even if some woke again meanwhile (it wakes us for
            // those), so a busy connection cannot keep this from yielding.
            let mut ended = 0;
            while let Poll::Ready(Some(())) = me.running.poll_next_unpin(cx) {
                ended += 1;
            }
            // Futures spawned by the pass itself (hyper's body pipes and
            // response waiters) are taken at once, not a runtime turn later.
            if taken == 0 && ended == 0 {
                break;
            }
        }
        match me.open || !me.running.is_empty() {
            true => Poll::Pending,
            false => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_panic_ends_its_future_only() {
        let rt = crate::runtime::build_worker_runtime().unwrap();
        let s = Spawner::start(rt.handle());
        let done = Arc::new(AtomicUsize::new(0));
        assert!(s.spawn(async { panic!("boom") }));
        for _ in 0..10 {
            let done = done.clone();
            assert!(s.spawn(async move {
                tokio::task::yield_now().await;
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::SeqCst) < 10 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(done.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn a_future_spawned_by_a_future_runs() {
        let rt = crate::runtime::build_worker_runtime().unwrap();
        let s = Spawner::start(rt.handle());
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = s.clone();
        assert!(s.spawn(async move {
            inner.spawn(async move {
                let _ = tx.send(tokio::task::id());
            });
        }));
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn spawning_after_the_runtime_is_gone_is_refused() {
        let rt = crate::runtime::build_worker_runtime().unwrap();
        let s = Spawner::start(rt.handle());
        drop(rt);
        assert!(!s.spawn(async {}));
    }
}
