//! A client's `extra_headers`, turned into the gRPC metadata etcd would have
//! received had they gone through its HTTP gateway.
//!
//! The gateway forwards a request header `Grpc-Metadata-<name>: v` as
//! metadata `<name>: v`; that is how HTTP callers reach etcd's metadata
//! switches, `hasleader` above all. Every other header stops at the gateway
//! as far as etcd is concerned (standard HTTP headers become `grpcgateway-*`
//! metadata that etcd never reads), so here they are dropped. The headers
//! lua-resty-etcd refuses to let callers set are dropped too.

use std::sync::Arc;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use crate::error::{Error, Result};

/// The prefix the gateway strips to make a metadata name.
const FORWARDED: &str = "grpc-metadata-";

/// Headers lua-resty-etcd ignores in `extra_headers` (lower case).
const IGNORED: [&str; 5] = [
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// Metadata sent with every call of one client; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pairs: Arc<[(AsciiMetadataKey, AsciiMetadataValue)]>,
    /// Canonical text of `pairs`: equal metadata, equal key.
    key: Arc<str>,
    /// The connection's auth token, sent last so that no extra header can
    /// override it; not part of equality (it is the connection's, not the
    /// caller's).
    token: Option<crate::auth::Token>,
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Metadata) -> bool {
        self.key == other.key
    }
}

impl Eq for Metadata {}

impl std::hash::Hash for Metadata {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

impl Metadata {
    /// Maps HTTP headers (name, value) to metadata. A forwarded header whose
    /// name or value gRPC cannot carry is an error naming the header.
    pub fn from_headers<I>(headers: I) -> Result<Metadata>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if IGNORED.contains(&lower.as_str()) {
                continue;
            }
            let Some(meta) = lower.strip_prefix(FORWARDED) else {
                continue;
            };
            pairs.push((meta.to_string(), value));
            // headers given twice (differently cased) keep the last value
            let last = pairs.len() - 1;
            if let Some(i) = pairs[..last].iter().position(|(k, _)| k == meta) {
                pairs.swap_remove(i);
            }
        }
        pairs.sort();
        let mut parsed = Vec::with_capacity(pairs.len());
        let mut key = String::new();
        for (name, value) in &pairs {
            let k = name.parse::<AsciiMetadataKey>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "opts.extra_headers: invalid metadata name in header Grpc-Metadata-{name}"
                ))
            })?;
            let v = value.parse::<AsciiMetadataValue>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "opts.extra_headers: invalid value for header Grpc-Metadata-{name}"
                ))
            })?;
            parsed.push((k, v));
            key.push_str(name);
            key.push('=');
            key.push_str(value);
            key.push('\n');
        }
        Ok(Metadata {
            pairs: parsed.into(),
            key: key.into(),
            token: None,
        })
    }

    /// This metadata plus `hasleader: true` (etcd's `WithRequireLeader`),
    /// unless the caller set `hasleader` itself: a member cut off from the
    /// quorum then ends the stream with `no leader` instead of keeping it
    /// open and silent, and the stream moves to another member.
    pub fn require_leader(&self) -> Metadata {
        if self.pairs.iter().any(|(k, _)| k.as_str() == "hasleader") {
            return self.clone();
        }
        let mut pairs: Vec<_> = self.pairs.to_vec();
        pairs.push((
            AsciiMetadataKey::from_static("hasleader"),
            AsciiMetadataValue::from_static("true"),
        ));
        Metadata {
            pairs: pairs.into(),
            key: format!("{}hasleader=true\n", self.key).into(),
            token: self.token.clone(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// This metadata plus the auth token `token` (`None`: as it is).
    pub fn with_token(&self, token: Option<crate::auth::Token>) -> Metadata {
        Metadata {
            token,
            ..self.clone()
        }
    }

    /// The generation of the token carried (0: none).
    pub fn token_generation(&self) -> u64 {
        self.token.as_ref().map_or(0, |t| t.generation)
    }

    /// Wraps `msg` in a request that carries this metadata.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        let map = req.metadata_mut();
        for (k, v) in self.pairs.iter() {
            map.insert(k.clone(), v.clone());
        }
        if let Some(t) = &self.token {
            map.insert("token", t.value.clone());
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Result<Metadata> {
        Metadata::from_headers(list.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn forwarded_headers_become_metadata() {
        let m = headers(&[
            ("Grpc-Metadata-hasleader", "true"),
            ("GRPC-METADATA-X-Trace", "a1"),
        ])
        .unwrap();
        let req = m.request(());
        assert_eq!(req.metadata().get("hasleader").unwrap(), "true");
        assert_eq!(req.metadata().get("x-trace").unwrap(), "a1");
        assert_eq!(req.metadata().len(), 2);
    }

    #[test]
    fn other_and_refused_headers_are_dropped() {
        let m = headers(&[
            ("Authorization", "t"),
            ("X-Request-Id", "1"),
            ("Host", "h"),
            ("content-length", "3"),
        ])
        .unwrap();
        assert!(m.is_empty());
        assert_eq!(m, Metadata::default());
    }

    #[test]
    fn order_does_not_matter_and_last_duplicate_wins() {
        let a = headers(&[("Grpc-Metadata-a", "1"), ("Grpc-Metadata-b", "2")]).unwrap();
        let b = headers(&[("grpc-metadata-b", "2"), ("Grpc-Metadata-a", "1")]).unwrap();
        assert_eq!(a, b);
        let c = headers(&[("Grpc-Metadata-a", "0"), ("grpc-metadata-A", "1")]).unwrap();
        assert_eq!(c.request(()).metadata().get("a").unwrap(), "1");
        assert_eq!(c.request(()).metadata().len(), 1);
    }

    #[test]
    fn extra_headers_cannot_override_the_token() {
        let m = headers(&[("Grpc-Metadata-token", "forged")]).unwrap();
        let t = crate::auth::Token {
            generation: 1,
            value: "real".parse().unwrap(),
        };
        let with = m.with_token(Some(t));
        assert_eq!(with, m, "the token is not part of the metadata's identity");
        let req = with.request(());
        assert_eq!(req.metadata().get_all("token").iter().count(), 1);
        assert_eq!(req.metadata().get("token").unwrap(), "real");
    }

    #[test]
    fn unsendable_headers_are_errors_not_panics() {
        let e = headers(&[("Grpc-Metadata-bad name", "1")]).unwrap_err();
        assert!(e.to_string().contains("Grpc-Metadata-bad name"), "{e}");
        let e = headers(&[("Grpc-Metadata-ok", "line\nbreak")]).unwrap_err();
        assert!(e.to_string().contains("invalid value"), "{e}");
        assert!(headers(&[("Grpc-Metadata-", "1")]).is_err());
        assert!(headers(&[("Grpc-Metadata-blob-bin", "1")]).is_err());
    }
}
