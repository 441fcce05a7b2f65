//! One unary call with clientv3's retry policy: reads go to the next
//! member after Unavailable or a transport failure, writes only when the
//! request provably never left; a call cut by its deadline marks its
//! member suspect.
//!
//! Every retry stays inside the call's timeout: the bridge drops the whole
//! call at its deadline, whatever attempt it is on. That drop is also the
//! signal a hung member gives (SIGSTOP, a network cut: TCP stays up,
//! nothing answers), seconds before HTTP/2 pings would notice.

use std::future::Future;

use tonic::transport::Channel;

use super::{Connection, Route};
use crate::error::{Error, Result};
use crate::metadata::Metadata;

/// Which failures a call may be retried after (clientv3's policies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Range, Status, lease reads: after Unavailable or a transport
    /// failure, on the next member.
    Read,
    /// Put, DeleteRange, Txn, lease grant/revoke: only when nothing was
    /// sent (the connection could not be made).
    Write,
}

/// Marks the route's member suspect if the call is dropped before it
/// finished (its deadline passed).
struct Inflight<'a> {
    conn: &'a Connection,
    route: Option<&'a Route>,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if let Some(route) = self.route.take() {
            self.conn.report_failure(route);
        }
    }
}

impl Connection {
    /// Makes one unary call of `msg` with metadata `meta` on the CRUD
    /// channel, retried on other members as `retry` allows. A failure
    /// moves later calls to the next member; the error names the endpoint.
    /// Under auth, a call etcd refuses for its token is made once more
    /// with a fresh one, transparently.
    pub async fn unary<M, T, F, Fut>(
        &self,
        retry: Retry,
        meta: &Metadata,
        msg: M,
        call: F,
    ) -> Result<T>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let members = self.config.endpoints.len();
        let mut tries = members.saturating_sub(1);
        let mut token_retry = self.auth.enabled();
        // Only a call that may be retried keeps a copy of its request.
        let keep = token_retry || tries > 0;
        let mut msg = msg;
        loop {
            let again = keep.then(|| msg.clone());
            let meta = self.authorize(meta).await?;
            let route = self.crud()?;
            let mut inflight = Inflight {
                conn: self,
                route: Some(&route),
            };
            // Boxed: tonic's call future is kilobytes, and unboxed it would
            // make every operation's future (moved on each hand-off) that
            // big too.
            let out = Box::pin(call(route.channel.clone(), meta.request(msg))).await;
            inflight.route = None;
            drop(inflight);
            let status = match out {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(status) => status,
            };
            let unsent = never_sent(&status);
            let err = self.failed(&route, status);
            let Some(m) = again else {
                return Err(err);
            };
            msg = m;
            if token_retry && err.is_token_refusal() {
                token_retry = false;
                continue;
            }
            if tries > 0 && retryable(retry, &err, unsent) {
                tries -= 1;
                continue;
            }
            return Err(err);
        }
    }
}

/// Whether `err` (which `unsent` says never left) may be retried on
/// another member under `retry`.
fn retryable(retry: Retry, err: &Error, unsent: bool) -> bool {
    let failure =
        matches!(err, Error::Transport { .. }) || err.grpc_code() == Some(tonic::Code::Unavailable);
    match retry {
        Retry::Read => failure,
        Retry::Write => failure && unsent,
    }
}

/// Whether the call failed before its request could leave: the connection
/// to the member could not be made.
pub fn never_sent(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        let text = err.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport() -> Error {
        Error::Transport {
            endpoint: "http://127.0.0.1:2379".into(),
            reason: "connection reset".into(),
        }
    }

    fn status(status: tonic::Status) -> Error {
        Error::Status {
            endpoint: "http://127.0.0.1:2379".into(),
            status,
        }
    }

    #[test]
    fn reads_are_retried_after_any_member_failure() {
        for unsent in [false, true] {
            assert!(retryable(Retry::Read, &transport(), unsent));
            let leader_changed = status(tonic::Status::unavailable("etcdserver: leader changed"));
            assert!(retryable(Retry::Read, &leader_changed, unsent));
        }
    }

    #[test]
    fn writes_are_retried_only_when_nothing_was_sent() {
        // a write that left may have been applied: a retry could apply it twice
        assert!(!retryable(Retry::Write, &transport(), false));
        let timed_out = status(tonic::Status::unavailable("etcdserver: request timed out"));
        assert!(!retryable(Retry::Write, &timed_out, false));
        assert!(retryable(Retry::Write, &transport(), true));
    }

    #[test]
    fn etcd_refusals_are_never_retried() {
        let refusals = [
            tonic::Status::invalid_argument("etcdserver: key is not provided"),
            tonic::Status::failed_precondition("etcdserver: requested lease not found"),
            tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
            tonic::Status::deadline_exceeded("context deadline exceeded"),
        ];
        for r in refusals {
            let e = status(r);
            assert!(!retryable(Retry::Read, &e, false));
            assert!(!retryable(Retry::Write, &e, true));
        }
    }

    #[test]
    fn a_refused_connection_counts_as_never_sent() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let refused = tonic::Status::from_error(Box::new(io));
        assert!(never_sent(&refused));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!never_sent(&tonic::Status::from_error(Box::new(reset))));
        assert!(!never_sent(&tonic::Status::unavailable(
            "etcdserver: leader changed"
        )));
    }

    #[test]
    fn a_failed_connect_as_hyper_words_it_counts_as_never_sent() {
        type BoxError = Box<dyn std::error::Error + Send + Sync>;
        let connect = |text: &str| tonic::Status::from_error(BoxError::from(text.to_string()));
        assert!(never_sent(&connect(
            "tcp connect error: Connection refused (os error 111)"
        )));
        assert!(never_sent(&connect(
            "error trying to connect: deadline has elapsed"
        )));
        assert!(!never_sent(&connect("connection error: broken pipe")));
    }
}
