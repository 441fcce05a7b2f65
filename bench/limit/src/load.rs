//! The closed loop: C tasks take op numbers from one counter until N ops
//! are done, each timing its own calls on a monotonic clock.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::report::micros;
use crate::sys;
use crate::Result;

/// What one run of the loop measured.
pub struct Outcome {
    /// Latency of every successful op, in microseconds, in no order.
    pub latencies: Vec<u32>,
    /// Ops that failed.
    pub errors: u64,
    /// Wall-clock seconds from the start to the last op's end.
    pub secs: f64,
    /// Process CPU seconds (user + sys, all threads) over the same window.
    pub cpu_secs: f64,
}

impl Outcome {
    /// Ops that succeeded.
    pub fn ok(&self) -> u64 {
        self.latencies.len() as u64
    }
}

/// What one task brings back.
struct Share {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs ops `0..ops` with `concurrency` tasks in a closed loop: each task
/// starts its next op as soon as its last one ends. The first failure, if
/// any, is told on stderr; failures are counted, not fatal.
pub async fn closed_loop<F, Fut>(concurrency: u64, ops: u64, op: F) -> Result<Outcome>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::result::Result<(), tonic::Status>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let cpu = sys::cpu_secs();
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(next.clone(), ops, op.clone())))
        .collect();
    let mut out = Outcome {
        latencies: Vec::with_capacity(ops as usize),
        errors: 0,
        secs: 0.0,
        cpu_secs: 0.0,
    };
    let mut first_error = None;
    for task in tasks {
        let share = task.await.map_err(|e| format!("a load task failed: {e}"))?;
        out.latencies.extend(share.latencies);
        out.errors += share.errors;
        first_error = first_error.or(share.first_error);
    }
    out.secs = start.elapsed().as_secs_f64();
    out.cpu_secs = sys::cpu_since(cpu);
    if let Some(e) = first_error {
        eprintln!("{} of {ops} ops failed, the first with: {e}", out.errors);
    }
    Ok(out)
}

async fn worker<F, Fut>(next: Arc<AtomicU64>, ops: u64, op: F) -> Share
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = std::result::Result<(), tonic::Status>>,
{
    let mut share = Share {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= ops {
            return share;
        }
        let t0 = Instant::now();
        match op(i).await {
            Ok(()) => share.latencies.push(micros(t0.elapsed())),
            Err(status) => {
                share.errors += 1;
                share.first_error.get_or_insert_with(|| status.to_string());
            }
        }
    }
}
