//! Endpoints to gRPC channels: one long-lived HTTP/2 connection for CRUD and
//! one for sync traffic per set of endpoints and credentials.
//!
//! A tonic `Channel` multiplexes every call of a worker over one TCP
//! connection, reconnects by itself after a failure, and is cheap to clone.
//! We deliberately dial a single endpoint at a time (not a balanced list, which
//! would hold a connection to every member): connection count must not grow
//! with the cluster size. A transport failure moves to the next endpoint.
//!
//! Transport knows no services: the streams that run over the sync channel
//! belong to the services, registered in [`crate::registry`].

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::metadata::Metadata;

/// Default cap on a single response; etcd itself sends up to 2 GiB.
pub const UNLIMITED: usize = usize::MAX;

/// What identifies a connection: two clients with equal configs share one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Endpoints as `http://host:port` (IPv6 hosts in brackets).
    pub endpoints: Vec<String>,
    /// Index of the endpoint to try first (lua-resty-etcd's `init_count`).
    pub first: usize,
    /// Largest response accepted, in bytes.
    pub max_recv: usize,
}

impl Config {
    /// A config for `endpoints`, starting at the first one, with no
    /// response size limit.
    pub fn new(endpoints: Vec<String>) -> Config {
        Config {
            endpoints,
            first: 0,
            max_recv: UNLIMITED,
        }
    }

    /// The string under which a worker keeps the shared connection.
    pub fn key(&self) -> String {
        format!("{}|{}", self.endpoints.join(","), self.max_recv)
    }

    /// Checks every endpoint can be dialled; returns the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoint given".into()));
        }
        for ep in &self.endpoints {
            endpoint(ep)?;
        }
        Ok(())
    }
}

/// One channel and the index of the endpoint it dials.
#[derive(Clone)]
struct Dialed {
    index: usize,
    channel: Channel,
}

/// The long-lived connections of one worker to one etcd cluster.
pub struct Connection {
    config: Config,
    crud: Mutex<Option<Dialed>>,
    sync: Mutex<Option<Dialed>>,
    /// Rotates over endpoints after failures; shared by both channels so
    /// that CRUD and sync fail over together.
    next: AtomicUsize,
}

/// A channel ready for one call, with the endpoint it goes to (for errors).
pub struct Route {
    /// `http://host:port` of the endpoint.
    pub endpoint: String,
    /// The channel to call on.
    pub channel: Channel,
    index: usize,
}

impl Connection {
    /// A connection that dials lazily, on first use. Must be called inside a
    /// Tokio runtime context: the channel's worker task is spawned there.
    pub fn new(config: Config) -> Result<Connection> {
        config.validate()?;
        let first = config.first % config.endpoints.len();
        Ok(Connection {
            config,
            crud: Mutex::new(None),
            sync: Mutex::new(None),
            next: AtomicUsize::new(first),
        })
    }

    /// The config this connection was made from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The CRUD channel (unary calls).
    pub fn crud(&self) -> Result<Route> {
        self.route(&self.crud)
    }

    /// The sync channel (watch and lease keepalive streams).
    pub fn sync(&self) -> Result<Route> {
        self.route(&self.sync)
    }

    fn route(&self, slot: &Mutex<Option<Dialed>>) -> Result<Route> {
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.next.load(Ordering::Relaxed);
        let dialed = match guard.as_ref() {
            Some(d) if d.index == current => d.clone(),
            _ => {
                let ep = &self.config.endpoints[current];
                let channel = endpoint(ep)?.connect_lazy();
                let d = Dialed {
                    index: current,
                    channel,
                };
                *guard = Some(d.clone());
                d
            }
        };
        Ok(Route {
            endpoint: self.config.endpoints[dialed.index].clone(),
            channel: dialed.channel,
            index: dialed.index,
        })
    }

    /// Called after a transport failure on `route`: the next call goes to
    /// the next endpoint (a no-op with a single endpoint, where the channel
    /// simply reconnects).
    pub fn report_failure(&self, route: &Route) {
        let n = self.config.endpoints.len();
        if n > 1 {
            let _ = self.next.compare_exchange(
                route.index,
                (route.index + 1) % n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Largest response accepted, in bytes.
    pub fn max_recv(&self) -> usize {
        self.config.max_recv
    }

    /// Makes one unary call of `msg` with metadata `meta` on the CRUD
    /// channel. A transport failure moves later calls to the next endpoint;
    /// the error names the endpoint.
    pub async fn unary<M, T, F, Fut>(&self, meta: &Metadata, msg: M, call: F) -> Result<T>
    where
        F: FnOnce(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let route = self.crud()?;
        // Boxed: tonic's call future is kilobytes, and unboxed it would make
        // every operation's future (moved on each hand-off) that big too.
        match Box::pin(call(route.channel.clone(), meta.request(msg))).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => Err(self.failed(&route, status)),
        }
    }

    /// The error for a call or stream on `route` that ended with `status`;
    /// a transport failure (not an answer from etcd) moves later calls to
    /// the next endpoint.
    pub fn failed(&self, route: &Route, status: tonic::Status) -> Error {
        let err = Error::from_status(&route.endpoint, status);
        if matches!(err, Error::Transport { .. }) {
            self.report_failure(route);
        }
        err
    }
}

/// Channel settings shared by every connection.
fn endpoint(uri: &str) -> Result<Endpoint> {
    let ep = Endpoint::from_shared(uri.to_string())
        .map_err(|e| Error::InvalidArgument(format!("invalid http host: {uri}, err: {e}")))?;
    Ok(ep
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // Dead connections are found by HTTP/2 pings, not by deadlines on
        // streams. etcd's server policy: pings at least 5 s apart while
        // streams are open, none while idle (PermitWithoutStream=false), or
        // it answers GOAWAY too_many_pings.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(false)
        // Large windows so that multi-megabyte ranges are not throttled by
        // flow control round trips.
        .initial_connection_window_size(16 * 1024 * 1024)
        .initial_stream_window_size(8 * 1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_configs_share_a_key() {
        let a = Config::new(vec!["http://127.0.0.1:2379".into()]);
        let b = Config::new(vec!["http://127.0.0.1:2379".into()]);
        assert_eq!(a.key(), b.key());
        let c = Config::new(vec!["http://127.0.0.1:2380".into()]);
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn bad_endpoint_is_an_error_not_a_panic() {
        let c = Config::new(vec!["http://bad host:1".into()]);
        assert!(matches!(c.validate(), Err(Error::InvalidArgument(_))));
        assert!(Config::new(vec![]).validate().is_err());
    }

    #[test]
    fn failover_rotates_and_wraps() {
        let rt = crate::runtime::build_throwaway_runtime().unwrap();
        let _g = rt.enter();
        let mut cfg = Config::new(vec![
            "http://127.0.0.1:1".into(),
            "http://127.0.0.1:2".into(),
        ]);
        cfg.first = 1;
        let c = Connection::new(cfg).unwrap();
        let r = c.crud().unwrap();
        assert_eq!(r.endpoint, "http://127.0.0.1:2");
        c.report_failure(&r);
        assert_eq!(c.crud().unwrap().endpoint, "http://127.0.0.1:1");
        // a stale report (from the old route) does not skip an endpoint
        c.report_failure(&r);
        assert_eq!(c.crud().unwrap().endpoint, "http://127.0.0.1:1");
    }
}
