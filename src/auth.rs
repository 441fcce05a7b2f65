//! etcd's Auth service (Authenticate only) and the token one connection
//! holds for its `user`/`password`.
//!
//! Invariants:
//! - at most one Authenticate is in flight per connection; callers that
//!   arrive meanwhile wait for it and share its outcome, token or error;
//! - a token is dropped only by a failure of a call that carried it (its
//!   generation), so a late failure never discards a fresher token;
//! - neither the password nor a token is ever formatted: `Debug` redacts
//!   them, and errors and notices name only the user and the endpoint.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tonic::metadata::AsciiMetadataValue;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::pb::etcdserverpb::auth_client::AuthClient;
use crate::pb::etcdserverpb::AuthenticateRequest as PbAuthenticateRequest;
use crate::tls::Secret;

/// `user` and `password`; part of the connection key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// etcd user name.
    pub user: String,
    /// Its password (redacted in `Debug`).
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A token and the generation it was issued in.
#[derive(Clone)]
pub struct Token {
    /// Counts successful Authenticates of this connection.
    pub generation: u64,
    /// The value of metadata `token`.
    pub value: AsciiMetadataValue,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(generation {}, <redacted>)", self.generation)
    }
}

#[derive(Default)]
struct Current {
    token: Option<Token>,
    /// Refreshes finished (either way); a waiter compares it to see whether
    /// one ended while it waited.
    refreshes: u64,
    generation: u64,
    last_error: Option<Error>,
}

/// The token state of one connection.
pub struct Auth {
    credentials: Option<Credentials>,
    current: Mutex<Current>,
    /// Held for the whole of a refresh: the single flight.
    refresh: tokio::sync::Mutex<()>,
    authenticates: AtomicU64,
}

impl Auth {
    /// Token state for `credentials` (none: calls carry no token).
    pub fn new(credentials: Option<Credentials>) -> Auth {
        Auth {
            credentials,
            current: Mutex::new(Current::default()),
            refresh: tokio::sync::Mutex::new(()),
            authenticates: AtomicU64::new(0),
        }
    }

    /// Whether calls need a token.
    pub fn enabled(&self) -> bool {
        self.credentials.is_some()
    }

    /// Authenticate calls made so far (introspection and tests).
    pub fn authenticates(&self) -> u64 {
        self.authenticates.load(Ordering::Relaxed)
    }

    /// The generation of the current token (0 before the first).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the token of `generation` after etcd refused it (or its
    /// connection broke: a restarted etcd forgot its simple tokens).
    pub fn invalidate(&self, generation: u64) {
        let mut c = self.lock();
        if c.token.as_ref().is_some_and(|t| t.generation == generation) {
            c.token = None;
        }
    }

    /// The token to send, authenticating first if there is none; `None`
    /// without credentials.
    pub async fn token(&self, conn: &Connection) -> Result<Option<Token>> {
        let Some(creds) = &self.credentials else {
            return Ok(None);
        };
        let seen = {
            let c = self.lock();
            if let Some(t) = &c.token {
                return Ok(Some(t.clone()));
            }
            c.refreshes
        };
        let _flight = self.refresh.lock().await;
        {
            let c = self.lock();
            if c.refreshes != seen {
                // A refresh ended while we waited: share its outcome.
                return match (&c.token, &c.last_error) {
                    (Some(t), _) => Ok(Some(t.clone())),
                    (None, Some(e)) => Err(share(e)),
                    (None, None) => Err(Error::Internal("token dropped".into())),
                };
            }
        }
        self.authenticates.fetch_add(1, Ordering::Relaxed);
        let outcome = authenticate(conn, creds).await;
        let mut c = self.lock();
        c.refreshes += 1;
        match outcome {
            Ok(value) => {
                c.generation += 1;
                let t = Token {
                    generation: c.generation,
                    value,
                };
                c.token = Some(t.clone());
                c.last_error = None;
                Ok(Some(t))
            }
            Err(e) => {
                c.last_error = Some(share(&e));
                Err(e)
            }
        }
    }
}

/// A copy of an Authenticate failure for the callers that waited for it.
fn share(e: &Error) -> Error {
    match e {
        Error::AuthFailed { endpoint, reason } => Error::AuthFailed {
            endpoint: endpoint.clone(),
            reason: reason.clone(),
        },
        Error::Transport { endpoint, reason } => Error::Transport {
            endpoint: endpoint.clone(),
            reason: reason.clone(),
        },
        Error::Status { endpoint, status } => Error::Status {
            endpoint: endpoint.clone(),
            status: tonic::Status::new(status.code(), status.message()),
        },
        Error::Timeout => Error::Timeout,
        other => Error::Internal(other.to_string()),
    }
}

/// One Authenticate on the CRUD channel, without token or extra metadata.
/// etcd's refusal becomes [`Error::AuthFailed`] plus one WARN naming the
/// endpoint and etcd's reason; transport failures stay what they are.
async fn authenticate(conn: &Connection, creds: &Credentials) -> Result<AsciiMetadataValue> {
    let route = conn.crud()?;
    let req = PbAuthenticateRequest {
        name: creds.user.clone(),
        password: String::from_utf8_lossy(&creds.password.0).into_owned(),
    };
    let answer = Box::pin(AuthClient::new(route.channel.clone()).authenticate(req)).await;
    let refused = |reason: String| {
        crate::notice::warn(format!(
            "etcd_grpc: authenticate as user \"{}\" on {} failed: {reason}",
            creds.user, route.endpoint
        ));
        Error::AuthFailed {
            endpoint: route.endpoint.clone(),
            reason,
        }
    };
    match answer {
        Ok(resp) => {
            let token = resp.into_inner().token;
            match token.parse::<AsciiMetadataValue>() {
                Ok(v) if !token.is_empty() => Ok(v),
                _ => Err(refused("etcd answered without a usable token".into())),
            }
        }
        Err(status) => match conn.failed(&route, status) {
            Error::Status { status, .. } => Err(refused(status.message().to_string())),
            other => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials {
            user: "alice".into(),
            password: Secret(b"s3cret-pw".to_vec().into()),
        };
        let text = format!("{c:?}");
        assert!(text.contains("alice") && !text.contains("s3cret"), "{text}");
        let t = Token {
            generation: 3,
            value: "tok.en-value".parse().unwrap(),
        };
        assert!(!format!("{t:?}").contains("tok.en"));
    }

    #[test]
    fn invalidate_only_the_failed_generation() {
        let a = Auth::new(None);
        a.lock().token = Some(Token {
            generation: 2,
            value: "t".parse().unwrap(),
        });
        a.invalidate(1);
        assert!(a.lock().token.is_some());
        a.invalidate(2);
        assert!(a.lock().token.is_none());
    }

    #[test]
    fn shared_failure_keeps_the_contract_string() {
        let e = Error::AuthFailed {
            endpoint: "https://h:1".into(),
            reason: "etcdserver: authentication failed, invalid user ID or password".into(),
        };
        assert_eq!(share(&e).to_string(), "authenticate refresh token fail");
        assert_eq!(e.to_string(), "authenticate refresh token fail");
    }
}
