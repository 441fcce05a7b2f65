//! The unary commands, all on the CRUD channel: kv, stamp, blast, fill,
//! readdir.

use std::time::{Duration, Instant};

use etcd_grpc_core::pb::etcdserverpb::RangeRequest as PbRangeRequest;
use tokio::time::MissedTickBehavior;

use crate::args::Args;
use crate::conn::{filler, prefix_end, put_request, Channels};
use crate::load::{closed_loop, Outcome};
use crate::report::{rate, Json, Latencies};
use crate::{sys, Bench, Result};

/// `kv`: one key read or written by C tasks in a closed loop.
pub struct Kv {
    get: bool,
    concurrency: u64,
    ops: u64,
    key: String,
    value_size: usize,
    warmup: u64,
}

impl Bench for Kv {
    fn parse(a: &mut Args) -> Result<Kv> {
        let get = match a.required::<String>("op")?.as_str() {
            "get" => true,
            "set" => false,
            other => return Err(format!("--op must be get or set, not {other}").into()),
        };
        let ops = a.count("ops", None)?;
        Ok(Kv {
            get,
            concurrency: a.count("concurrency", None)?,
            ops,
            key: a.optional("key", "/bench/kv".to_string())?,
            value_size: a.optional("value-size", 256)?,
            warmup: a.optional("warmup", (ops / 10).min(2000))?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let kv = ch.kv();
        let value = filler(self.value_size);
        kv.clone()
            .put(put_request(self.key.clone(), value.clone()))
            .await
            .map_err(|e| format!("cannot write {}: {e}", self.key))?;
        let key = self.key.clone().into_bytes();
        let out = if self.get {
            self.measure(move |_| {
                let mut kv = kv.clone();
                let req = PbRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                };
                async move { kv.range(req).await.map(drop) }
            })
            .await?
        } else {
            self.measure(move |_| {
                let mut kv = kv.clone();
                let req = put_request(key.clone(), value.clone());
                async move { kv.put(req).await.map(drop) }
            })
            .await?
        };
        Ok(Json::new()
            .str("op", if self.get { "get" } else { "set" })
            .int("concurrency", self.concurrency)
            .int("ops", self.ops)
            .int("errors", out.errors)
            .num("secs", out.secs)
            .num("ops_per_sec", rate(out.ok(), out.secs))
            .latencies(&Latencies::of(out.latencies))
            .num("cpu_secs", out.cpu_secs)
            .num("cpu_us_per_op", out.cpu_secs * 1e6 / self.ops as f64))
    }
}

impl Kv {
    /// Warms up (unmeasured), then measures `ops` runs of `op`.
    async fn measure<F, Fut>(&self, op: F) -> Result<Outcome>
    where
        F: Fn(u64) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = std::result::Result<(), tonic::Status>> + Send + 'static,
    {
        if self.warmup > 0 {
            closed_loop(self.concurrency, self.warmup, op.clone()).await?;
        }
        closed_loop(self.concurrency, self.ops, op).await
    }
}

/// `stamp`: puts at a steady pace, each value the wall-clock time it was
/// sent at, for a watcher elsewhere to measure put→event latency.
pub struct Stamp {
    pub key: String,
    pub count: u64,
    interval: Duration,
    value_size: usize,
}

impl Bench for Stamp {
    fn parse(a: &mut Args) -> Result<Stamp> {
        Ok(Stamp {
            key: a.required("key")?,
            count: a.count("count", None)?,
            interval: Duration::from_millis(a.count("interval-ms", None)?),
            value_size: a.optional("value-size", 256)?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let errors = self.write(&ch).await;
        Ok(Json::new().int("puts", self.count).int("errors", errors))
    }
}

impl Stamp {
    /// Makes the puts, one per interval (a slow put delays the next one
    /// rather than causing a burst); returns how many failed.
    pub async fn write(&self, ch: &Channels) -> u64 {
        let mut kv = ch.kv();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut errors = 0;
        for _ in 0..self.count {
            tick.tick().await;
            let req = put_request(self.key.clone(), stamp(self.value_size));
            if let Err(e) = kv.put(req).await {
                if errors == 0 {
                    eprintln!("stamp put to {} failed: {e}", self.key);
                }
                errors += 1;
            }
        }
        errors
    }
}

/// The CLOCK_REALTIME nanoseconds now, in decimal, padded with 'x' to
/// `size` bytes.
fn stamp(size: usize) -> Vec<u8> {
    let mut v = sys::realtime_ns().to_string().into_bytes();
    v.resize(size.max(v.len()), b'x');
    v
}

/// `blast`: puts as fast as C tasks can make them, to 64 keys under a
/// prefix (`--prefix` may list several, comma-separated: put i goes to
/// prefix i mod n).
pub struct Blast {
    pub prefix: String,
    pub count: u64,
    concurrency: u64,
    value_size: usize,
}

impl Bench for Blast {
    fn parse(a: &mut Args) -> Result<Blast> {
        Ok(Blast {
            prefix: a.required("prefix")?,
            count: a.count("count", None)?,
            concurrency: a.count("concurrency", None)?,
            value_size: a.optional("value-size", 256)?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let out = self.write(&ch).await?;
        Ok(Json::new()
            .int("puts", self.count)
            .int("errors", out.errors)
            .num("secs", out.secs)
            .num("puts_per_sec", rate(out.ok(), out.secs)))
    }
}

impl Blast {
    /// Makes the puts, keys `prefix[i % n]` + (i / n % 64).
    pub async fn write(&self, ch: &Channels) -> Result<Outcome> {
        let prefixes: Vec<String> = self.prefix.split(',').map(String::from).collect();
        let n = prefixes.len() as u64;
        put_loop(
            ch,
            self.concurrency,
            self.count,
            self.value_size,
            move |i| format!("{}{}", prefixes[(i % n) as usize], i / n % 64),
        )
        .await
    }
}

/// `fill`: N keys of a given size under a prefix, for `readdir`.
pub struct Fill {
    prefix: String,
    count: u64,
    concurrency: u64,
    value_size: usize,
}

impl Bench for Fill {
    fn parse(a: &mut Args) -> Result<Fill> {
        Ok(Fill {
            prefix: a.required("prefix")?,
            count: a.count("count", None)?,
            concurrency: a.count("concurrency", Some(16))?,
            value_size: a.optional("value-size", 1024)?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let prefix = self.prefix.clone();
        let key = move |i| format!("{prefix}{i:08}");
        let out = put_loop(&ch, self.concurrency, self.count, self.value_size, key).await?;
        if out.errors > 0 {
            return Err(format!("{} of {} puts failed", out.errors, self.count).into());
        }
        Ok(Json::new().int("keys", self.count).num("secs", out.secs))
    }
}

/// `count` puts of `value_size`-byte values to `key(i)`, in a closed loop.
async fn put_loop(
    ch: &Channels,
    concurrency: u64,
    count: u64,
    value_size: usize,
    key: impl Fn(u64) -> String + Clone + Send + 'static,
) -> Result<Outcome> {
    let kv = ch.kv();
    let value = filler(value_size);
    closed_loop(concurrency, count, move |i| {
        let mut kv = kv.clone();
        let req = put_request(key(i), value.clone());
        async move { kv.put(req).await.map(drop) }
    })
    .await
}

/// `readdir`: one Range over a whole prefix, with the memory it took.
pub struct Readdir {
    prefix: String,
}

impl Bench for Readdir {
    fn parse(a: &mut Args) -> Result<Readdir> {
        Ok(Readdir {
            prefix: a.required("prefix")?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let mut kv = ch.kv();
        let key = self.prefix.clone().into_bytes();
        // Dial before measuring: only the Range itself counts.
        let probe = PbRangeRequest {
            key: key.clone(),
            ..Default::default()
        };
        kv.range(probe).await?;
        let req = PbRangeRequest {
            range_end: prefix_end(&key),
            key,
            ..Default::default()
        };
        sys::reset_peak_rss()?;
        let before = sys::vm_kib("VmRSS")?;
        let start = Instant::now();
        let resp = kv.range(req).await?.into_inner();
        let secs = start.elapsed().as_secs_f64();
        let peak = sys::vm_kib("VmHWM")?;
        let bytes: usize = resp.kvs.iter().map(|kv| kv.value.len()).sum();
        Ok(Json::new()
            .int("keys", resp.kvs.len() as u64)
            .int("bytes", bytes as u64)
            .num("secs", secs)
            .int("rss_growth_kib", peak.saturating_sub(before)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_leads_with_the_time_and_pads() {
        let v = stamp(256);
        assert_eq!(v.len(), 256);
        let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
        assert!((19..=20).contains(&digits));
        assert!(v[digits..].iter().all(|&b| b == b'x'));
        assert!(stamp(4).len() >= 19);
    }
}
