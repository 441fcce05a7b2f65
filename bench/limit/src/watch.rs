//! The watch commands: one Watch stream on the watch channel, writers on
//! the CRUD channel: watch-latency, watch-rate, watchers.

use std::time::{Duration, Instant};

use etcd_grpc_core::pb::etcdserverpb::{
    watch_request::RequestUnion, RangeRequest as PbRangeRequest,
    WatchCreateRequest as PbWatchCreateRequest, WatchRequest as PbWatchRequest,
    WatchResponse as PbWatchResponse,
};
use tokio::sync::mpsc;

use crate::args::Args;
use crate::conn::{port_of, prefix_end, Channels};
use crate::crud::{Blast, Stamp};
use crate::report::{micros, rate, Json, Latencies};
use crate::{sys, Bench, Result};

/// How long a reader waits for the next response before it gives up and
/// reports what it has (a writer that failed leaves events missing).
const QUIET: Duration = Duration::from_secs(10);

/// One bidirectional Watch stream and the queue of its requests.
pub struct WatchStream {
    /// Kept open: dropping it would half-close the stream.
    requests: mpsc::UnboundedSender<PbWatchRequest>,
    responses: tonic::Streaming<PbWatchResponse>,
}

impl WatchStream {
    /// Opens a stream on the watch channel with its first watcher, on
    /// `key` (to `range_end` if not empty), and waits until it is created.
    pub async fn open(ch: &Channels, key: Vec<u8>, range_end: Vec<u8>) -> Result<WatchStream> {
        let (requests, rx) = mpsc::unbounded_channel();
        // etcd sends the stream's headers only with its first message, so
        // the first create is queued before the call that waits for them.
        requests.send(create(key, range_end))?;
        let outbound =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let responses = ch.watcher().watch(outbound).await?.into_inner();
        let mut stream = WatchStream {
            requests,
            responses,
        };
        stream.created().await?;
        Ok(stream)
    }

    /// Adds a watcher on `key` and waits for it to be created (etcd wants
    /// the creates of auto-assigned ids one at a time).
    pub async fn add(&mut self, key: Vec<u8>) -> Result<()> {
        self.add_range(key, Vec::new()).await
    }

    /// [`WatchStream::add`] for `key` to `range_end`.
    pub async fn add_range(&mut self, key: Vec<u8>, range_end: Vec<u8>) -> Result<()> {
        self.requests.send(create(key, range_end))?;
        self.created().await
    }

    async fn created(&mut self) -> Result<()> {
        while !self.next().await?.created {}
        Ok(())
    }

    /// The next response; a cancelled watcher or the stream's end is an error.
    pub async fn next(&mut self) -> Result<PbWatchResponse> {
        match self.responses.message().await? {
            Some(r) if r.canceled => Err(format!("watch canceled: {}", r.cancel_reason).into()),
            Some(r) => Ok(r),
            None => Err("the watch stream ended".into()),
        }
    }

    /// Like [`WatchStream::next`], but `None` after [`QUIET`] without one.
    pub async fn next_or_quiet(&mut self) -> Result<Option<PbWatchResponse>> {
        match tokio::time::timeout(QUIET, self.next()).await {
            Ok(r) => r.map(Some),
            Err(_) => {
                eprintln!("no watch response for {QUIET:?}: stopping early");
                Ok(None)
            }
        }
    }
}

fn create(key: Vec<u8>, range_end: Vec<u8>) -> PbWatchRequest {
    PbWatchRequest {
        request_union: Some(RequestUnion::CreateRequest(PbWatchCreateRequest {
            key,
            range_end,
            ..Default::default()
        })),
    }
}

/// `watch-latency`: a watcher on one key while `stamp` writes to it; each
/// event's latency is the wall clock at receipt minus its stamp.
pub struct WatchLatency {
    stamp: Stamp,
}

impl Bench for WatchLatency {
    fn parse(a: &mut Args) -> Result<WatchLatency> {
        Ok(WatchLatency {
            stamp: Stamp::parse(a)?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let count = self.stamp.count as usize;
        let key = self.stamp.key.clone().into_bytes();
        let mut stream = WatchStream::open(&ch, key, Vec::new()).await?;
        let writer = tokio::spawn(async move { self.stamp.write(&ch).await });
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            let Some(resp) = stream.next_or_quiet().await? else {
                break;
            };
            let now = sys::realtime_ns();
            let stamps = resp
                .events
                .iter()
                .filter_map(|e| stamp_of(&e.kv.as_ref()?.value));
            latencies.extend(stamps.map(|s| micros(Duration::from_nanos(now.saturating_sub(s)))));
        }
        writer.await?;
        Ok(Json::new()
            .int("events", latencies.len() as u64)
            .latencies(&Latencies::of(latencies)))
    }
}

/// The nanoseconds a stamped value leads with.
fn stamp_of(value: &[u8]) -> Option<u64> {
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&value[..digits]).ok()?.parse().ok()
}

/// `watch-rate`: a prefix watcher while `blast` writes under the prefix;
/// the rate at which events arrive.
pub struct WatchRate {
    blast: Blast,
}

impl Bench for WatchRate {
    fn parse(a: &mut Args) -> Result<WatchRate> {
        Ok(WatchRate {
            blast: Blast::parse(a)?,
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let count = self.blast.count;
        let prefix = self.blast.prefix.clone().into_bytes();
        let mut stream = WatchStream::open(&ch, prefix.clone(), prefix_end(&prefix)).await?;
        let writer = tokio::spawn(async move { self.blast.write(&ch).await });
        let mut events = 0;
        // When the first events arrived, and how many came with them: the
        // rate counts only those after.
        let mut first: Option<(Instant, u64)> = None;
        while events < count {
            let Some(resp) = stream.next_or_quiet().await? else {
                break;
            };
            let n = resp.events.len() as u64;
            events += n;
            if n > 0 && first.is_none() {
                first = Some((Instant::now(), n));
            }
        }
        let (start, head) = first.ok_or("no event arrived")?;
        let secs = start.elapsed().as_secs_f64();
        let puts = writer.await??;
        Ok(Json::new()
            .int("events", events)
            .num("secs", secs)
            .num("events_per_sec", rate(events - head, secs))
            .num("writer_puts_per_sec", rate(puts.ok(), puts.secs)))
    }
}

/// `watchers`: N idle watchers on one stream: their memory, their idle CPU
/// and the connections they hold.
pub struct Watchers {
    prefix: String,
    count: u64,
    idle: Duration,
}

impl Bench for Watchers {
    fn parse(a: &mut Args) -> Result<Watchers> {
        Ok(Watchers {
            prefix: a.required("prefix")?,
            count: a.count("count", None)?,
            idle: Duration::from_secs(a.optional("idle-secs", 10)?),
        })
    }

    async fn run(self, ch: Channels) -> Result<Json> {
        let port = port_of(&ch.endpoint)?;
        let key = |i| format!("{}{i}", self.prefix).into_bytes();
        let probe = PbRangeRequest {
            key: key(0),
            ..Default::default()
        };
        ch.kv().range(probe).await?;
        let before = sys::vm_kib("VmRSS")?;
        let mut stream = WatchStream::open(&ch, key(0), Vec::new()).await?;
        for i in 1..self.count {
            stream.add(key(i)).await?;
        }
        let growth = sys::vm_kib("VmRSS")?.saturating_sub(before);
        let cpu = sys::cpu_secs();
        let idle = tokio::time::sleep(self.idle);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                _ = &mut idle => break,
                r = stream.next() => { r?; }
            }
        }
        let idle_cpu = sys::cpu_since(cpu);
        Ok(Json::new()
            .int("watchers", self.count)
            .int("rss_growth_kib", growth)
            .num("idle_cpu_secs", idle_cpu)
            .int("connections", sys::connections_to(port)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_leading_stamp() {
        assert_eq!(
            stamp_of(b"1700000000000000000xxxx"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(stamp_of(b"xx"), None);
        assert_eq!(stamp_of(b""), None);
    }
}
