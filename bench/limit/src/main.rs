//! bench-limit: the limit `make bench` compares etcd_grpc with. A raw tonic
//! etcd client with etcd_grpc's protos and channel settings, the same two
//! connections (CRUD and watch), and no Lua or nginx in between.
//!
//! # Layout
//!
//! - [`args`]: `--name value` flags.
//! - [`conn`]: the two channels, made by etcd_grpc's own `Connection`.
//! - [`load`]: the closed loop of C tasks over N ops.
//! - [`crud`]: `kv`, `stamp`, `blast`, `fill`, `readdir`.
//! - [`watch`]: `watch-latency`, `watch-rate`, `watchers`.
//! - [`gateway`]: `sync`, `watch-burst` (what an API gateway does).
//! - [`report`], [`sys`]: the JSON line; clocks, memory, sockets.
//!
//! Every command prints one JSON object on one line on stdout and nothing
//! else there; errors go to stderr with exit code 1.

mod args;
mod conn;
mod crud;
mod gateway;
mod load;
mod report;
mod sys;
mod watch;

use std::process::ExitCode;

use args::Args;
use conn::Channels;
use report::Json;

/// What a command can fail with: the tool only prints it and exits.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "\
usage: bench-limit COMMAND --endpoint http://HOST:PORT [--runtime multi|current] [--threads 2] [flags]
  kv --op get|set --concurrency C --ops N [--key /bench/kv] [--value-size 256] [--warmup W]
  stamp --key K --count N --interval-ms M [--value-size 256]
  blast --prefix P[,P2,...] --count N --concurrency C [--value-size 256]
  watch-latency --key K --count N --interval-ms M [--value-size 256]
  watch-rate --prefix P --count N --concurrency C [--value-size 256]
  fill --prefix P --count N [--value-size 1024] [--concurrency 16]
  readdir --prefix P
  watchers --prefix P --count N [--idle-secs 10]
  sync --prefixes P1,P2,...
  watch-burst --prefixes P1,P2,... --count N --ready-file F";

/// One command: its flags, then its run on the two channels.
trait Bench: Sized {
    /// Takes and checks the command's own flags.
    fn parse(a: &mut Args) -> Result<Self>;
    /// Runs the command; the JSON object it reports.
    async fn run(self, ch: Channels) -> Result<Json>;
}

fn main() -> ExitCode {
    match dispatch(std::env::args().skip(1)) {
        Ok(json) => {
            println!("{}", json.line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-limit: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(mut words: impl Iterator<Item = String>) -> Result<Json> {
    let command = words.next().ok_or(USAGE)?;
    let mut a = Args::parse(words)?;
    match command.as_str() {
        "kv" => go(crud::Kv::parse(&mut a)?, a),
        "stamp" => go(crud::Stamp::parse(&mut a)?, a),
        "blast" => go(crud::Blast::parse(&mut a)?, a),
        "fill" => go(crud::Fill::parse(&mut a)?, a),
        "readdir" => go(crud::Readdir::parse(&mut a)?, a),
        "watch-latency" => go(watch::WatchLatency::parse(&mut a)?, a),
        "watch-rate" => go(watch::WatchRate::parse(&mut a)?, a),
        "watchers" => go(watch::Watchers::parse(&mut a)?, a),
        "sync" => go(gateway::Sync::parse(&mut a)?, a),
        "watch-burst" => go(gateway::WatchBurst::parse(&mut a)?, a),
        other => Err(format!("unknown command {other}\n{USAGE}").into()),
    }
}

/// Takes the common flags, builds the runtime (`--runtime multi` with
/// `--threads` workers, or `--runtime current`: everything on the main
/// thread, which can beat a multi-thread runtime where a thread hand-off
/// costs more than a core's worth of work) and runs `bench` on fresh
/// channels to `--endpoint`.
fn go(bench: impl Bench, mut a: Args) -> Result<Json> {
    let endpoint: String = a.required("endpoint")?;
    let threads = a.count("threads", Some(2))?;
    let flavor: String = a.optional("runtime", "multi".to_string())?;
    a.finish()?;
    let rt = match flavor.as_str() {
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads as usize)
            .enable_all()
            .build()?,
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        other => return Err(format!("--runtime must be multi or current, not {other}").into()),
    };
    let json = rt.block_on(async move { bench.run(Channels::open(&endpoint)?).await })?;
    Ok(json.str("runtime", &flavor))
}
