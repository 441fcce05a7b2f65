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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A future as the driver runs it.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How many times one poll of the driver takes newly spawned futures and
/// runs what is ready before it yields to the runtime's other tasks.
const PASSES: usize = 4;

/// Most futures taken from the queue at once (one unit of tokio's
/// cooperative budget per batch, not one per future).
const TAKE: usize = 256;

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
            taken: Vec::with_capacity(TAKE),
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
        self.queue.send(Box::pin(fut)).is_ok()
    }
}

/// tonic and hyper spawn their connection's futures through this. tonic
/// boxes them already: they are queued as they come, not boxed again.
impl hyper::rt::Executor<Job> for Spawner {
    fn execute(&self, fut: Job) {
        // Refused only while the runtime shuts down, when nothing of the
        // connection will run again anyway.
        let _ = self.queue.send(fut);
    }
}

/// One future under a panic guard that also covers its drop: a panic in
/// its poll or in its destructor (h2 panics in `Drop` once a panic
/// poisoned its lock) ends this future alone, as a task's would, and
/// cannot unwind through the driver into every other call.
struct Guarded(Option<Job>);

impl Guarded {
    fn discard(&mut self) {
        if let Some(fut) = self.0.take() {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(fut)));
        }
    }
}

impl Future for Guarded {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(fut) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) | Err(_) => {
                self.discard();
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.discard();
    }
}

/// The task: takes every future spawned since it last ran, then polls the
/// ready ones, new ones first.
struct Driver {
    jobs: mpsc::UnboundedReceiver<Job>,
    /// Reused for every batch taken from `jobs`: no allocation per poll.
    taken: Vec<Job>,
    running: FuturesUnordered<Guarded>,
    open: bool,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = &mut *self;
        for _ in 0..PASSES {
            while me.open {
                match me.jobs.poll_recv_many(cx, &mut me.taken, TAKE) {
                    Poll::Ready(0) => me.open = false,
                    Poll::Ready(_) => {
                        for job in me.taken.drain(..) {
                            me.running.push(Guarded(Some(job)));
                        }
                    }
                    // Also when tokio's cooperative budget is spent: the
                    // queue then wakes us again, after other tasks ran.
                    Poll::Pending => break,
                }
            }
            // FuturesUnordered stops after polling as many futures as it
            // holds, or when two woke themselves, and then wakes us: a busy
            // connection cannot keep this loop from ending.
            while let Poll::Ready(Some(())) = me.running.poll_next_unpin(cx) {}
            // Futures spawned by that pass (hyper's body pipes and response
            // waiters, a new connection's tasks) are taken at once, not a
            // runtime turn later.
            if me.jobs.is_empty() {
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
    fn a_panic_in_a_futures_drop_ends_it_only() {
        // A future whose own destructor panics after it completed, as h2's
        // stream handles do once their lock is poisoned.
        struct PanicsOnDrop;
        impl Future for PanicsOnDrop {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                Poll::Ready(())
            }
        }
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("drop");
            }
        }
        let rt = crate::runtime::build_worker_runtime().unwrap();
        let s = Spawner::start(rt.handle());
        let done = Arc::new(AtomicUsize::new(0));
        assert!(s.spawn(PanicsOnDrop));
        // The one pending across the panic must still complete.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let d = done.clone();
        assert!(s.spawn(async move {
            let _ = wait.await;
            d.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        }));
        std::thread::sleep(Duration::from_millis(50));
        let _ = go.send(());
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        let d = done.clone();
        assert!(s.spawn(async move {
            d.fetch_add(1, Ordering::SeqCst);
        }));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(done.load(Ordering::SeqCst), 2, "the driver lives on");
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
