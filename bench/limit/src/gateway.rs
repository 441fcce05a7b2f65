//! What an API gateway does with etcd, as the limit does it: `sync` (the
//! start-up full sync of every prefix) and `watch-burst` (one worker's
//! watchers on every prefix while a burst of puts lands).

use std::time::Instant;

use etcd_grpc_core::pb::etcdserverpb::{
    RangeRequest as PbRangeRequest, RangeResponse as PbRangeResponse,
};

use crate::args::Args;
use crate::conn::{prefix_end, Channels};
use crate::report::Json;
use crate::watch::WatchStream;
use crate::{sys, Bench, Result};

/// The comma-separated prefixes of `--prefixes`.
fn prefixes(a: &mut Args) -> Result<Vec<String>> {
    let list: String = a.required("prefixes")?;
    Ok(list.split(',').map(String::from).collect())
}

/// `sync`: one Range per prefix, all at once on the CRUD channel, every
/// response held until the last arrived (a gateway keeps what it synced);
/// the time it took and the peak memory it needed.
pub struct Sync {
    prefixes: Vec<String>,
}

impl Bench for Sync {
    fn parse(a: &mut Args) -> Result<Sync> {
        Ok(Sync {
            prefixes: prefixes(a)?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let kv = ch.kv();
        // Dial before measuring: only the sync itself counts.
        kv.clone().range(range(b"/", false)).await?;
        sys::reset_peak_rss()?;
        let before = sys::vm_kib("VmRSS")?;
        let cpu = sys::cpu_secs();
        let start = Instant::now();
        let tasks: Vec<_> = self
            .prefixes
            .iter()
            .map(|p| {
                let mut kv = kv.clone();
                let req = range(p.as_bytes(), true);
                tokio::spawn(async move { kv.range(req).await.map(|r| r.into_inner()) })
            })
            .collect();
        let mut held: Vec<PbRangeResponse> = Vec::with_capacity(tasks.len());
        for t in tasks {
            held.push(t.await??);
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = sys::cpu_since(cpu);
        let peak = sys::vm_kib("VmHWM")?;
        let keys: usize = held.iter().map(|r| r.kvs.len()).sum();
        let bytes: usize = held
            .iter()
            .flat_map(|r| r.kvs.iter())
            .map(|kv| kv.value.len())
            .sum();
        Ok(Json::new()
            .int("keys", keys as u64)
            .int("bytes", bytes as u64)
            .num("secs", secs)
            .num("cpu_secs", cpu)
            .int("rss_growth_kib", peak.saturating_sub(before)))
    }
}

fn range(key: &[u8], prefix: bool) -> PbRangeRequest {
    PbRangeRequest {
        key: key.to_vec(),
        range_end: if prefix { prefix_end(key) } else { Vec::new() },
        ..Default::default()
    }
}

/// `watch-burst`: one watcher per prefix on one Watch stream; touches
/// `--ready-file` once all are created, then reads until `--count` events
/// arrived. Reports when the last one came (CLOCK_REALTIME, to compare
/// with the writer's start) and the CPU spent meanwhile.
pub struct WatchBurst {
    prefixes: Vec<String>,
    count: u64,
    ready_file: String,
}

impl Bench for WatchBurst {
    fn parse(a: &mut Args) -> Result<WatchBurst> {
        Ok(WatchBurst {
            prefixes: prefixes(a)?,
            count: a.count("count", None)?,
            ready_file: a.required("ready-file")?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let key = |p: &String| p.clone().into_bytes();
        let first = key(&self.prefixes[0]);
        let mut stream = WatchStream::open(&ch, first.clone(), prefix_end(&first)).await?;
        for p in &self.prefixes[1..] {
            stream.add_range(key(p), prefix_end(&key(p))).await?;
        }
        let cpu = sys::cpu_secs();
        std::fs::write(&self.ready_file, b"ready")?;
        let mut events = 0;
        while events < self.count {
            let Some(resp) = stream.next_or_quiet().await? else {
                break;
            };
            events += resp.events.len() as u64;
        }
        let done_ns = sys::realtime_ns();
        Ok(Json::new()
            .int("events", events)
            .int("done_ns", done_ns)
            .num("cpu_secs", sys::cpu_since(cpu)))
    }
}
