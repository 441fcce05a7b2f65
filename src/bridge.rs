//! The hand-off between Lua and Tokio: submit a job, run it on the runtime
//! under a deadline, queue its result by id, ring the doorbell.
//!
//! Every job ends: with its own result, with `Timeout` at its deadline, with
//! `Closed` shortly after the worker starts exiting, or with `Panic` if it
//! panicked. So every submitted id is eventually completed exactly once and
//! no waiter is left behind on the Lua side.
//!
//! Jobs run on the worker's [`Spawner`], not as a task each: a burst of
//! calls then starts in one pass and goes out in one write (see
//! [`crate::driver`]).
//!
//! What is in flight is counted here, on the runtime's side, and nowhere
//! else: a Lua coroutine that waited can be killed (`ngx.thread.kill`, the
//! request ending) without running any code, so a count kept in Lua can be
//! left too high forever. A job's completion is queued before it stops
//! counting, so once [`Bridge::in_flight`] reads 0, one more drain hands
//! out every result there will ever be.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::doorbell::Doorbell;
use crate::driver::Spawner;
use crate::error::{Error, Result};

/// How long in-flight calls may still run once the worker starts exiting.
/// Long enough for a normal etcd round trip to finish, short enough that an
/// exiting worker never lingers on a stuck call.
pub const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Most calls one worker may have in flight at once. Every call holds its
/// request, its future and (later) its result; a caller that submits
/// without ever waiting must hit a wall, not exhaust the worker's memory.
pub const MAX_IN_FLIGHT: usize = 100_000;

/// One finished job: its id and its outcome.
pub type Completion<R> = (u64, Result<R>);

/// The completion queue, the doorbell and the exit signal of one worker.
pub struct Bridge<R> {
    tx: Sender<Completion<R>>,
    rx: Receiver<Completion<R>>,
    bell: Arc<Doorbell>,
    next_id: AtomicU64,
    in_flight: Arc<AtomicUsize>,
    exiting: watch::Sender<bool>,
}

impl<R: Send + 'static> Bridge<R> {
    /// A bridge whose completions ring `bell`.
    pub fn new(bell: Arc<Doorbell>) -> Bridge<R> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (exiting, _) = watch::channel(false);
        Bridge {
            tx,
            rx,
            bell,
            next_id: AtomicU64::new(1),
            in_flight: Arc::new(AtomicUsize::new(0)),
            exiting,
        }
    }

    /// Starts `job` on `driver` and returns its id at once. The result arrives
    /// through [`Bridge::drain`] after the doorbell rang. Refused with
    /// `TooBusy` when [`MAX_IN_FLIGHT`] calls are already running.
    pub fn submit<F>(&self, driver: &Spawner, timeout: Duration, job: F) -> Result<u64>
    where
        F: Future<Output = Result<R>> + Send + 'static,
    {
        self.submit_with_grace(driver, timeout, EXIT_GRACE, job)
    }

    /// [`Bridge::submit`] with the time the job may still run once the
    /// worker exits: zero for a job that only waits for news (a watch
    /// read), which an exiting worker has no use for.
    pub fn submit_with_grace<F>(
        &self,
        driver: &Spawner,
        timeout: Duration,
        grace: Duration,
        job: F,
    ) -> Result<u64>
    where
        F: Future<Output = Result<R>> + Send + 'static,
    {
        if self.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            return Err(Error::TooBusy(MAX_IN_FLIGHT));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tx = self.tx.clone();
        let bell = self.bell.clone();
        let in_flight = self.in_flight.clone();
        let exiting = self.exiting.subscribe();
        in_flight.fetch_add(1, Ordering::Relaxed);
        // Boxed apart from its wrapper: both allocations then stay small
        // enough for malloc's small bins (one above 1 KiB made glibc
        // consolidate its fast bins on every call).
        let job = Box::pin(job);
        let started = driver.spawn(async move {
            let out = guarded(job, timeout, grace, exiting).await;
            // The receiver lives as long as the bridge; a send cannot fail
            // while anyone could still read it. Queued before the count
            // drops: see the module doc.
            let _ = tx.send((id, out));
            in_flight.fetch_sub(1, Ordering::Release);
            bell.ring();
        });
        if !started {
            // Only once the runtime is gone: nothing could run the job.
            self.in_flight.fetch_sub(1, Ordering::Release);
            return Err(Error::Closed);
        }
        Ok(id)
    }

    /// Runs `job` on `rt` and waits for it on the calling thread, for the
    /// phases where nginx cannot yield. Matches its own result only.
    pub fn call_blocking<F>(&self, rt: &Handle, timeout: Duration, job: F) -> Result<R>
    where
        F: Future<Output = Result<R>> + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let exiting = self.exiting.subscribe();
        rt.spawn(async move {
            let _ = tx.send(guarded(job, timeout, EXIT_GRACE, exiting).await);
        });
        // The job's own deadline fires first; the margin only covers
        // scheduling, so a wedged runtime cannot hold the worker forever.
        match rx.recv_timeout(timeout + Duration::from_millis(250)) {
            Ok(out) => out,
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Clears the doorbell, then hands every queued completion to `each`.
    /// Returns how many there were.
    pub fn drain(&self, mut each: impl FnMut(u64, Result<R>)) -> usize {
        self.bell.clear();
        let mut n = 0;
        while let Ok((id, out)) = self.rx.try_recv() {
            each(id, out);
            n += 1;
        }
        n
    }

    /// Jobs started and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Tells every running and future job that the worker is exiting: each
    /// gets [`EXIT_GRACE`] more to finish, then ends with `Closed`.
    pub fn begin_exit(&self) {
        self.exiting.send_replace(true);
        self.bell.ring();
    }

    /// True once [`Bridge::begin_exit`] was called.
    pub fn is_exiting(&self) -> bool {
        *self.exiting.borrow()
    }
}

/// Runs `job` under its deadline, the exit signal (plus `grace`) and a
/// panic guard.
async fn guarded<R, F>(
    job: F,
    timeout: Duration,
    grace: Duration,
    mut exiting: watch::Receiver<bool>,
) -> Result<R>
where
    F: Future<Output = Result<R>>,
{
    let exit_grace = async move {
        // A closed channel means the bridge is gone: treat it as exiting.
        let _ = exiting.wait_for(|e| *e).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        biased;
        out = AssertUnwindSafe(job).catch_unwind() => out.unwrap_or_else(|p| Err(panic_error(p))),
        _ = tokio::time::sleep(timeout) => Err(Error::Timeout),
        _ = exit_grace => Err(Error::Closed),
    }
}

/// Turns a caught panic payload into an error value.
pub fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    };
    Error::Panic(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        crate::runtime::build_worker_runtime().unwrap()
    }

    fn driver(rt: &tokio::runtime::Runtime) -> Spawner {
        Spawner::start(rt.handle())
    }

    fn wait_drain(b: &Bridge<u32>, want: usize) -> Vec<Completion<u32>> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < want && std::time::Instant::now() < deadline {
            b.drain(|id, r| got.push((id, r)));
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn results_are_matched_by_id() {
        let rt = rt();
        let d = driver(&rt);
        let b = Bridge::new(Arc::new(Doorbell::default()));
        let a = b
            .submit(&d, Duration::from_secs(1), async { Ok(1) })
            .unwrap();
        let c = b
            .submit(&d, Duration::from_secs(1), async { Ok(2) })
            .unwrap();
        let mut got = wait_drain(&b, 2);
        got.sort_by_key(|(id, _)| *id);
        assert_eq!(got[0].0, a);
        assert_eq!(*got[0].1.as_ref().unwrap(), 1);
        assert_eq!(got[1].0, c);
        assert_eq!(*got[1].1.as_ref().unwrap(), 2);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn a_burst_is_first_polled_in_one_task() {
        // Jobs run in the driver's one task, not a task each (with a task
        // per job, every job below would see its own task id); what that
        // buys on the wire is measured in BENCHMARKS.md item 11.
        let rt = rt();
        let d = driver(&rt);
        let b: Bridge<u32> = Bridge::new(Arc::new(Doorbell::default()));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        // Keeps the runtime's one worker thread busy while the burst queues.
        rt.spawn(async move {
            let _ = hold.recv();
        });
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..50 {
            let seen = seen.clone();
            b.submit(&d, Duration::from_secs(5), async move {
                seen.lock().unwrap().push(tokio::task::id());
                tokio::task::yield_now().await;
                Ok(i)
            })
            .unwrap();
        }
        release.send(()).unwrap();
        assert_eq!(wait_drain(&b, 50).len(), 50);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 50);
        assert!(
            seen.iter().all(|id| *id == seen[0]),
            "every job of the burst started in one task"
        );
    }

    #[test]
    fn deadline_cancels_the_job() {
        let rt = rt();
        let d = driver(&rt);
        let b: Bridge<u32> = Bridge::new(Arc::new(Doorbell::default()));
        let dropped = Arc::new(AtomicUsize::new(0));
        struct OnDrop(Arc<AtomicUsize>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let guard = OnDrop(dropped.clone());
        b.submit(&d, Duration::from_millis(20), async move {
            let _g = guard;
            std::future::pending::<()>().await;
            Ok(0)
        })
        .unwrap();
        let got = wait_drain(&b, 1);
        assert!(matches!(got[0].1, Err(Error::Timeout)));
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the job future is dropped"
        );
    }

    #[test]
    fn panic_becomes_an_error_and_the_runtime_lives() {
        let rt = rt();
        let b: Bridge<u32> = Bridge::new(Arc::new(Doorbell::default()));
        let r = b.call_blocking(rt.handle(), Duration::from_secs(1), async {
            panic!("boom");
        });
        match r {
            Err(Error::Panic(m)) => assert_eq!(m, "boom"),
            other => panic!("unexpected {other:?}"),
        }
        let r = b.call_blocking(rt.handle(), Duration::from_secs(1), async { Ok(7) });
        assert_eq!(r.unwrap(), 7);
    }

    #[test]
    fn exit_ends_stuck_jobs_after_grace() {
        let rt = rt();
        let d = driver(&rt);
        let b: Bridge<u32> = Bridge::new(Arc::new(Doorbell::default()));
        b.submit(&d, Duration::from_secs(60), std::future::pending())
            .unwrap();
        b.begin_exit();
        let t0 = std::time::Instant::now();
        let got = wait_drain(&b, 1);
        assert!(matches!(got[0].1, Err(Error::Closed)));
        assert!(t0.elapsed() < EXIT_GRACE + Duration::from_secs(1));
    }

    #[test]
    fn a_job_without_grace_ends_at_once_on_exit() {
        let rt = rt();
        let d = driver(&rt);
        let b: Bridge<u32> = Bridge::new(Arc::new(Doorbell::default()));
        b.submit_with_grace(
            &d,
            Duration::from_secs(60),
            Duration::ZERO,
            std::future::pending(),
        )
        .unwrap();
        let t0 = std::time::Instant::now();
        b.begin_exit();
        let got = wait_drain(&b, 1);
        assert!(matches!(got[0].1, Err(Error::Closed)));
        assert!(t0.elapsed() < EXIT_GRACE / 2);
    }

    #[test]
    fn a_result_is_queued_before_in_flight_drops() {
        // The exit path relies on it: in_flight == 0 means one more drain
        // sees every result.
        let rt = rt();
        let d = driver(&rt);
        let b: Bridge<u32> = Bridge::new(Arc::new(Doorbell::default()));
        for i in 0..200 {
            b.submit(&d, Duration::from_secs(5), async move { Ok(i) })
                .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b.in_flight() > 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        let mut n = 0;
        b.drain(|_, _| n += 1);
        assert_eq!(n, 200);
    }

    #[test]
    fn submissions_past_the_cap_are_refused() {
        let rt = rt();
        let d = driver(&rt);
        let b: Bridge<u32> = Bridge::new(Arc::new(Doorbell::default()));
        b.in_flight.store(MAX_IN_FLIGHT, Ordering::Relaxed);
        let r = b.submit(&d, Duration::from_secs(1), async { Ok(1) });
        assert!(matches!(r, Err(Error::TooBusy(_))));
        b.in_flight.store(0, Ordering::Relaxed);
        assert!(b
            .submit(&d, Duration::from_secs(1), async { Ok(1) })
            .is_ok());
    }
}
