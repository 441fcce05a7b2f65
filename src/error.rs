//! The one error type of the crate, with the stable strings Lua callers see.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a Lua call and etcd's answer.
///
/// `Display` gives the exact string a Lua caller receives as `err`; callers
/// match on these, so they are part of the API and never change wording.
#[derive(Debug)]
pub enum Error {
    /// The call's deadline passed before etcd answered. Displays `timeout`,
    /// the string lua-resty-etcd returns for a cosocket timeout.
    Timeout,
    /// The worker is shutting down (or the object was closed).
    Closed,
    /// etcd answered with a gRPC status. Whether this becomes a response
    /// with an HTTP status or `nil, err` is decided by `shape`.
    Status {
        /// The endpoint the call went to (`http://host:port`).
        endpoint: String,
        /// etcd's answer, code and message kept.
        status: tonic::Status,
    },
    /// The connection could not be made or broke (`<endpoint>: <reason>`).
    Transport {
        /// The endpoint the call went to (`http://host:port`).
        endpoint: String,
        /// A short reason such as `connection refused`.
        reason: String,
    },
    /// The caller passed something unusable; the message says what.
    InvalidArgument(String),
    /// A watch ended by the library itself (e.g. its reader fell behind);
    /// the message says why.
    Ended(String),
    /// A panic inside the library; the worker survives, the call fails.
    Panic(String),
    /// A stream that should have answered ended without a message
    /// (`<endpoint>: stream ended without an answer`).
    NoAnswer {
        /// The endpoint the stream went to (`http://host:port`).
        endpoint: String,
    },
    /// The library itself failed (a runtime, socket or Lua value could not
    /// be made); never the caller's fault, never etcd's answer.
    Internal(String),
    /// Every member is unhealthy for `health_check` (lua-resty-etcd's
    /// `has no healthy etcd endpoint available`); nothing was sent.
    NoHealthy,
    /// The worker already has this many calls in flight.
    TooBusy(usize),
    /// etcd refused `user`/`password` (or could not be asked). Displays the
    /// contract's `authenticate refresh token fail`; `reason` (etcd's own
    /// answer) goes to the log, never to a caller that could echo it.
    AuthFailed {
        /// The endpoint the Authenticate call went to.
        endpoint: String,
        /// etcd's answer or the transport failure, as text.
        reason: String,
    },
}

impl Error {
    /// The gRPC code when etcd itself answered, for callers that branch on it.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether etcd refused the call for its token, so that a fresh one
    /// may succeed: `invalid auth token` (expired, or etcd restarted and
    /// forgot its simple tokens), `revision of auth store is old`, `user
    /// name is empty` (sent without a token).
    pub fn is_token_refusal(&self) -> bool {
        match self {
            Error::Status { status, .. } => is_token_text(status.message()),
            _ => false,
        }
    }

    /// A request etcd's gateway would refuse before calling etcd (bad
    /// base64, unknown enum name): a 400 with gRPC code InvalidArgument.
    pub fn bad_request(msg: String) -> Error {
        Error::Status {
            endpoint: String::new(),
            status: tonic::Status::invalid_argument(msg),
        }
    }

    /// Builds the error for a failed call to `endpoint`, telling etcd's own
    /// refusals apart from transport failures that tonic also reports as a
    /// `Status` (code `Unavailable`/`Unknown` with a transport source).
    pub fn from_status(endpoint: &str, status: tonic::Status) -> Error {
        if let Some(reason) = transport_reason(&status) {
            return Error::Transport {
                endpoint: endpoint.to_string(),
                reason,
            };
        }
        Error::Status {
            endpoint: endpoint.to_string(),
            status: gateway_status(status),
        }
    }
}

/// Whether etcd's message (or a watch's cancel reason) says the token was
/// the problem.
pub fn is_token_text(msg: &str) -> bool {
    msg.contains("invalid auth token")
        || msg.contains("revision of auth store is old")
        || msg.contains("user name is empty")
}

/// Rewrites the client library's own refusals into what etcd's gateway
/// reports for the same condition, so no tonic-specific text leaks: an
/// answer above the receive limit is grpc-go's ResourceExhausted
/// "grpc: received message larger than max (N vs. M)".
fn gateway_status(status: tonic::Status) -> tonic::Status {
    let msg = status.message();
    if status.code() == tonic::Code::OutOfRange && msg.contains("decoded message length too large")
    {
        let nums: Vec<&str> = msg
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .collect();
        if let [found, limit] = nums[..] {
            return tonic::Status::resource_exhausted(format!(
                "grpc: received message larger than max ({found} vs. {limit})"
            ));
        }
    }
    status
}

/// If `status` was produced by the client's transport rather than by etcd,
/// a short lower-case reason in the style of nginx's cosocket errors.
fn transport_reason(status: &tonic::Status) -> Option<String> {
    use std::error::Error as _;
    let mut source = status.source();
    let mut io_kind = None;
    let mut from_transport = false;
    let mut tls = None;
    while let Some(err) = source {
        if let Some(r) = crate::tls::reason_in(err) {
            tls = Some(r);
        }
        if err.is::<tonic::transport::Error>() {
            from_transport = true;
        }
        // The HTTP/2 connection failed under the call (a keepalive ping
        // unanswered, a reset, a GOAWAY): tonic wraps hyper's error in a
        // bare Status, and h2's error below it has no source to inspect.
        if let Some(http) = err.downcast_ref::<hyper::Error>() {
            from_transport = true;
            if http.is_timeout() {
                io_kind = Some(std::io::ErrorKind::TimedOut);
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        source = err.source();
    }
    if let Some(reason) = tls {
        return Some(reason);
    }
    if !from_transport && io_kind.is_none() {
        return None;
    }
    let reason = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset by peer".to_string(),
        Some(std::io::ErrorKind::TimedOut) => "timeout".to_string(),
        _ => status.message().to_string(),
    };
    Some(reason)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str("timeout"),
            Error::Closed => f.write_str("closed"),
            Error::Status { endpoint, status } => {
                write!(f, "{endpoint}: {}", status.message())
            }
            Error::Transport { endpoint, reason } => write!(f, "{endpoint}: {reason}"),
            Error::InvalidArgument(msg) | Error::Ended(msg) => f.write_str(msg),
            Error::Panic(msg) | Error::Internal(msg) => write!(f, "internal error: {msg}"),
            Error::NoHealthy => f.write_str("has no healthy etcd endpoint available"),
            Error::TooBusy(n) => write!(f, "too many calls in flight (limit {n})"),
            Error::AuthFailed { .. } => f.write_str("authenticate refresh token fail"),
            Error::NoAnswer { endpoint } => write!(f, "{endpoint}: stream ended without an answer"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_strings() {
        assert_eq!(Error::Timeout.to_string(), "timeout");
        assert_eq!(Error::Closed.to_string(), "closed");
        let e = Error::Transport {
            endpoint: "http://127.0.0.1:2379".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(e.to_string(), "http://127.0.0.1:2379: connection refused");
        assert_eq!(
            Error::Internal("failed to create doorbell: x".into()).to_string(),
            "internal error: failed to create doorbell: x"
        );
        assert_eq!(
            Error::NoHealthy.to_string(),
            "has no healthy etcd endpoint available"
        );
        assert_eq!(
            Error::TooBusy(7).to_string(),
            "too many calls in flight (limit 7)"
        );
    }

    #[test]
    fn decode_limit_reads_like_grpc_go() {
        let st = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 4211298 bytes, the limit is: 4194304 bytes",
        );
        let e = Error::from_status("http://h:1", st);
        assert_eq!(e.grpc_code(), Some(tonic::Code::ResourceExhausted));
        assert_eq!(
            e.to_string(),
            "http://h:1: grpc: received message larger than max (4211298 vs. 4194304)"
        );
    }

    #[test]
    fn etcd_refusal_keeps_code() {
        let st = tonic::Status::invalid_argument("etcdserver: key is not provided");
        let e = Error::from_status("http://h:1", st);
        assert_eq!(e.grpc_code(), Some(tonic::Code::InvalidArgument));
        assert_eq!(e.to_string(), "http://h:1: etcdserver: key is not provided");
    }
}
