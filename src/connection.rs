//! Endpoints to gRPC channels: one long-lived HTTP/2 connection for CRUD and
//! one for sync traffic per set of endpoints and credentials.
//!
//! A tonic `Channel` multiplexes every call of a worker over one TCP
//! connection, reconnects by itself after a failure, and is cheap to clone.
//! We deliberately dial a single endpoint at a time (not a balanced list, which
//! would hold a connection to every member): connection count must not grow
//! with the cluster size. A transport failure moves to the next endpoint.
//!
//! Both channels share the connection's TLS settings (an `https://`
//! endpoint is dialled through [`crate::tls::Connector`]) and its auth
//! token: every call and every stream (re)open gets its metadata from
//! [`Connection::authorize`], and reports failure through
//! [`Connection::failed`], which drops a token etcd refused.
//! Transport knows no services: the streams that run over the sync channel
//! belong to the services, registered in [`crate::registry`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use tonic::transport::{Channel, Endpoint};

use coalesce::Coalesced;

pub use call::Retry;
pub use health::Health;

use crate::auth::{Auth, Credentials};
use crate::driver::Spawner;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::tls::{Connector, Tls};

/// Default cap on a single response; etcd itself sends up to 2 GiB.
pub const UNLIMITED: usize = usize::MAX;

/// A client's connection settings. `Debug` shows no secret (key material
/// and password are redacted by their types).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Endpoints as `http://host:port` or `https://host:port` (IPv6 hosts
    /// in brackets).
    pub endpoints: Vec<String>,
    /// Index of the endpoint to try first (lua-resty-etcd's `init_count`).
    pub first: usize,
    /// Largest response accepted, in bytes.
    pub max_recv: usize,
    /// TLS settings, used for `https://` endpoints.
    pub tls: Tls,
    /// `user`/`password`, when auth is on.
    pub credentials: Option<Credentials>,
}

/// What identifies a shared connection: everything of a [`Config`] but
/// where it starts. Two clients with equal keys share one connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    endpoints: Vec<String>,
    max_recv: usize,
    tls: Tls,
    credentials: Option<Credentials>,
}

impl Config {
    /// A config for `endpoints`, starting at the first one, with no
    /// response size limit, default TLS settings and no credentials.
    pub fn new(endpoints: Vec<String>) -> Config {
        Config {
            endpoints,
            first: 0,
            max_recv: UNLIMITED,
            tls: Tls::default(),
            credentials: None,
        }
    }

    /// The value under which a worker keeps the shared connection.
    pub fn key(&self) -> Key {
        Key {
            endpoints: self.endpoints.clone(),
            max_recv: self.max_recv,
            tls: self.tls.clone(),
            credentials: self.credentials.clone(),
        }
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

    fn any_tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
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
    /// Dials `https://` endpoints (built once: the rustls config).
    tls: Option<Connector>,
    auth: Auth,
    /// Which members may be used (suspect marks, health_check's view).
    health: Health,
    /// The index `next` holds, for streams that must follow a move.
    moves: tokio::sync::watch::Sender<usize>,
    /// Where the CRUD channel's HTTP/2 futures run; `None`: a task each.
    driver: Option<Spawner>,
}

/// A channel ready for one call, with the endpoint it goes to (for errors).
pub struct Route {
    /// `http://host:port` of the endpoint.
    pub endpoint: String,
    /// The channel to call on.
    pub channel: Channel,
    index: usize,
    /// The token generation current when the route was taken: a refusal
    /// on it drops that token and no later one.
    auth_generation: u64,
}

impl Connection {
    /// A connection that dials lazily, on first use. Must be called inside a
    /// Tokio runtime context: the channel's worker task is spawned there.
    pub fn new(config: Config) -> Result<Connection> {
        Connection::make(config, None)
    }

    /// [`Connection::new`], with the CRUD channel's HTTP/2 futures (tonic's
    /// buffer, hyper's dispatcher, connection and per-call futures) run by
    /// `driver`, where the calls themselves run: a burst of calls then goes
    /// out in one write (see [`crate::driver`]). The sync channel keeps a
    /// task per future: its streams run in tasks of their own.
    pub fn driven(config: Config, driver: Spawner) -> Result<Connection> {
        Connection::make(config, Some(driver))
    }

    fn make(config: Config, driver: Option<Spawner>) -> Result<Connection> {
        config.validate()?;
        let first = config.first % config.endpoints.len();
        let tls = match config.any_tls() {
            true => Some(Connector::new(&config.tls)?),
            false => None,
        };
        if tls.is_some() && !config.tls.verify {
            crate::notice::warn(format!(
                "etcd_grpc: ssl_verify is false for {}: the server's certificate is not \
                 verified, anyone on the path can impersonate etcd (unsafe)",
                config.endpoints.join(",")
            ));
        }
        let config_len = config.endpoints.len();
        Ok(Connection {
            auth: Auth::new(config.credentials.clone()),
            config,
            crud: Mutex::new(None),
            sync: Mutex::new(None),
            next: AtomicUsize::new(first),
            tls,
            health: Health::new(config_len),
            moves: tokio::sync::watch::Sender::new(first),
            driver,
        })
    }

    /// The metadata for one call or one stream (re)open: `meta` plus the
    /// connection's auth token, authenticating first when there is none
    /// (one Authenticate at a time; concurrent callers wait for it). Every
    /// stream opener calls this at each open, then takes its route, and
    /// reports failure through [`Connection::failed`].
    pub async fn authorize(&self, meta: &Metadata) -> Result<Metadata> {
        if !self.auth.enabled() {
            return Ok(meta.clone());
        }
        Ok(meta.with_token(self.auth.token(self).await?))
    }

    /// Authenticate calls this connection made (introspection).
    pub fn authenticates(&self) -> u64 {
        self.auth.authenticates()
    }

    /// TLS handshakes this connection's channels completed (introspection).
    pub fn tls_handshakes(&self) -> u64 {
        self.tls.as_ref().map_or(0, Connector::handshakes)
    }

    /// The config this connection was made from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The CRUD channel (unary calls).
    pub fn crud(&self) -> Result<Route> {
        self.route(&self.crud, self.driver.as_ref())
    }

    /// The sync channel (watch and lease keepalive streams).
    pub fn sync(&self) -> Result<Route> {
        self.route(&self.sync, None)
    }

    fn route(&self, slot: &Mutex<Option<Dialed>>, driver: Option<&Spawner>) -> Result<Route> {
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let at = self.next.load(Ordering::Relaxed);
        let current = self.health.pick(at).ok_or(Error::NoHealthy)?;
        if current != at {
            self.move_from(at, current);
        }
        let dialed = match guard.as_ref() {
            Some(d) if d.index == current => d.clone(),
            _ => {
                let ep = &self.config.endpoints[current];
                let mut settings = endpoint(ep)?;
                if let Some(driver) = driver {
                    settings = settings.executor(driver.clone());
                }
                let channel = match &self.tls {
                    Some(tls) if ep.starts_with("https://") => settings
                        .connect_timeout(CONNECT_TIMEOUT)
                        .connect_with_connector_lazy(Coalesced(tls.clone())),
                    _ => settings.connect_with_connector_lazy(Coalesced(plain_connector())),
                };
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
            auth_generation: self.auth.generation(),
        })
    }

    /// Called after a transport failure or a timeout on `route`: its member
    /// is suspect for `fail_timeout` and the next call goes to the next
    /// healthy member (a no-op with a single endpoint, where the channel
    /// simply reconnects: the only member is never blacklisted).
    pub fn report_failure(&self, route: &Route) {
        let n = self.config.endpoints.len();
        if n > 1 {
            self.health.mark(route.index);
            let to = self
                .health
                .pick((route.index + 1) % n)
                .unwrap_or((route.index + 1) % n);
            self.move_from(route.index, to);
        }
    }

    /// Moves `next` from `from` to `to` unless another failure report
    /// moved it already (a stale report does not skip a member), and tells
    /// the streams.
    fn move_from(&self, from: usize, to: usize) {
        let moved = self
            .next
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed);
        if moved.is_ok() && from != to {
            self.moves.send_replace(to);
        }
    }

    /// Resolves once the connection has moved away from the member of
    /// `route`: a stream on it then reopens on the new member, instead of
    /// waiting ~15 s for HTTP/2 pings to find a hung member dead.
    pub fn moved_from(&self, route: &Route) -> impl std::future::Future<Output = ()> + 'static {
        let mut rx = self.moves.subscribe();
        let index = route.index;
        async move {
            if rx.wait_for(|&i| i != index).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The members' health (suspect marks and health_check's view).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Largest response accepted, in bytes.
    pub fn max_recv(&self) -> usize {
        self.config.max_recv
    }

    /// The error for a call or stream on `route` that ended with `status`.
    /// A transport failure (not an answer from etcd) moves later calls to
    /// the next endpoint. A token refusal drops the token the route was
    /// taken with, and so does a transport failure: a restarted etcd has
    /// forgotten its simple tokens, so the next call or stream open
    /// authenticates again instead of being refused first.
    pub fn failed(&self, route: &Route, status: tonic::Status) -> Error {
        let mut err = Error::from_status(&route.endpoint, status);
        if let Error::Transport { reason, .. } = &mut err {
            // The server refused the handshake's client certificate, and
            // this client has none: say what is missing.
            if reason.contains("client certificate") && self.config.tls.identity.is_none() {
                *reason = "handshake failed: the server requires a client certificate \
                           (set ssl_cert_path and ssl_key_path)"
                    .into();
            }
        }
        let transport = matches!(err, Error::Transport { .. });
        // etcd's Unavailable (no leader, a member cut off or stopping) is
        // the gateway's 503: a failure of the member too.
        if transport || err.grpc_code() == Some(tonic::Code::Unavailable) {
            self.report_failure(route);
        }
        if transport || err.is_token_refusal() {
            self.auth.invalidate(route.auth_generation);
        }
        err
    }
}

/// How long making a connection may take (name lookup, TCP, TLS).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What tonic's `connect_lazy` dials `http://` with (Nagle off, the
/// connect timeout, hyper's failure words, which `call::never_sent` and
/// the error strings rely on), built here so that its stream can be
/// wrapped.
fn plain_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http
}

/// Channel settings shared by every connection.
fn endpoint(uri: &str) -> Result<Endpoint> {
    let ep = Endpoint::from_shared(uri.to_string())
        .map_err(|e| Error::InvalidArgument(format!("invalid http host: {uri}, err: {e}")))?;
    // (Nagle is turned off by both connectors, plain and TLS.)
    Ok(ep
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

mod call;
mod coalesce;
mod health;

#[cfg(test)]
mod tests;
