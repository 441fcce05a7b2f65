//! Typed etcd results to the values lua-resty-etcd's HTTP mode hands back:
//! the gRPC gateway's JSON conventions, already decoded the way that library
//! decodes them.
//!
//! The rules (reference/gateway-json.md): int64/uint64 become decimal
//! strings; zero values are omitted (no `kvs` on a miss, no `lease` when 0);
//! field names are etcd's proto names; members come in field-number order. One file per etcd service: [`kv`],
//! [`watch`], [`lease`]; this one holds the value model and the rules they
//! share.
//! Keys and values of `kvs` are raw bytes (lua-resty-etcd base64-decodes
//! them), elsewhere bytes stay base64 exactly as the gateway sent them.

use crate::error::Error;
use crate::pb::etcdserverpb as pb;
use crate::sink::{Sink, ValueSink};

pub mod kv;
pub mod lease;
pub mod mirror;
pub mod watch;

/// A gateway-shaped value: what a JSON document decoded by cjson becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `true` (the gateway never emits `false`).
    Bool(bool),
    /// A JSON number: only 32-bit fields such as an error's `code`.
    Int(i64),
    /// A JSON string: text, a decimal int64, base64, or raw decoded bytes.
    Str(Vec<u8>),
    /// A JSON array.
    List(Vec<Value>),
    /// A JSON object, members in the gateway's order.
    Map(Vec<(&'static str, Value)>),
}

/// A finished call in HTTP terms: status, body, and the revision that
/// becomes the `X-Etcd-Index` header.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// HTTP status the gateway would have answered with.
    pub status: u16,
    /// The decoded JSON body.
    pub body: Body,
    /// `header.revision` when the response had one.
    pub revision: Option<i64>,
}

/// A reply's body: a built tree, or the typed answer of the two hot calls
/// (get and set), shaped only where it is delivered: into Lua tables on
/// the nginx thread, with no tree in between (see `sink`).
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// Already shaped.
    Value(Value),
    /// A Range answer, keys and values decoded (`get`, `readdir`).
    Range(pb::RangeResponse),
    /// A Put answer (`set`).
    Put(pb::PutResponse),
}

impl Body {
    /// Writes the shaped body to `s`.
    pub fn write(&self, s: &mut impl Sink) {
        match self {
            Body::Value(v) => v.write(s),
            Body::Range(r) => kv::write_range(r, Bytes::Decoded, s),
            Body::Put(r) => kv::write_put(r, s),
        }
    }

    /// The shaped body as a tree.
    pub fn value(&self) -> Value {
        ValueSink::build(|s| self.write(s))
    }

    /// The shaped body as the gateway's JSON (tests, logs).
    pub fn to_json(&self) -> String {
        self.value().to_json()
    }
}

impl Reply {
    /// A 200 reply.
    pub fn ok(body: Value, revision: Option<i64>) -> Reply {
        Reply::typed(Body::Value(body), revision)
    }

    /// A 200 reply with a typed body.
    pub fn typed(body: Body, revision: Option<i64>) -> Reply {
        Reply {
            status: 200,
            body,
            revision,
        }
    }
}

/// Builds a JSON object, leaving out members whose value is `None`.
pub(crate) struct Obj(Vec<(&'static str, Value)>);

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj(Vec::with_capacity(6))
    }
    pub(crate) fn put(mut self, name: &'static str, v: Option<Value>) -> Obj {
        if let Some(v) = v {
            self.0.push((name, v));
        }
        self
    }
    pub(crate) fn done(self) -> Value {
        Value::Map(self.0)
    }
}

/// An int64 as the gateway writes it: a decimal string, absent when zero.
pub(crate) fn int(n: i64) -> Option<Value> {
    (n != 0).then(|| Value::Str(n.to_string().into_bytes()))
}

/// `true`, or absent.
pub(crate) fn flag(b: bool) -> Option<Value> {
    b.then_some(Value::Bool(true))
}

/// How the bytes of a `KeyValue` are rendered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Bytes {
    /// Raw bytes, as lua-resty-etcd leaves `kvs` after decoding them; the
    /// value is always present (`""` when empty) for the deserializer.
    Decoded,
    /// Base64, absent when empty: what the gateway sent and the library
    /// passes through untouched (put `prev_kv`, delete `prev_kvs`, txn).
    Base64,
    /// Raw bytes, the value absent when empty: watch events, whose values
    /// lua-resty-etcd decodes only when present (DELETEs carry none).
    Event,
}

/// The `header` object.
pub fn header(h: Option<&pb::ResponseHeader>) -> Option<Value> {
    h.map(|h| ValueSink::build(|s| write_header(h, s)))
}

/// Writes the `header` object.
pub fn write_header(h: &pb::ResponseHeader, s: &mut impl Sink) {
    s.map(4);
    s.uint_field("cluster_id", h.cluster_id);
    s.uint_field("member_id", h.member_id);
    s.int_field("revision", h.revision);
    s.uint_field("raft_term", h.raft_term);
}

/// Writes `header` into the map on top, when there is one.
pub(crate) fn header_field(h: Option<&pb::ResponseHeader>, s: &mut impl Sink) {
    if let Some(h) = h {
        write_header(h, s);
        s.field("header");
    }
}

pub(crate) fn revision(h: Option<&pb::ResponseHeader>) -> Option<i64> {
    h.map(|h| h.revision)
}

/// `version()`: the shape of the gateway's `GET /version`. etcd's Status
/// RPC reports the member's server version; the cluster version there is
/// `<major>.<minor>.0` of the cluster's lowest member, which for the usual
/// single-version cluster is the same major.minor as the member's.
pub fn version_reply(r: &pb::StatusResponse) -> Reply {
    let cluster = cluster_version(&r.version);
    let body = Obj::new()
        .put(
            "etcdserver",
            Some(Value::Str(r.version.clone().into_bytes())),
        )
        .put("etcdcluster", Some(Value::Str(cluster.into_bytes())))
        .done();
    Reply::ok(body, revision(r.header.as_ref()))
}

fn cluster_version(server: &str) -> String {
    let mut parts = server.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}.0"),
        _ => server.to_string(),
    }
}

/// The HTTP status grpc-gateway v1 (etcd 3.4.x and 3.5.x) gives a gRPC code.
pub fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        Cancelled => 408,
        Unknown => 500,
        InvalidArgument => 400,
        DeadlineExceeded => 504,
        NotFound => 404,
        AlreadyExists => 409,
        PermissionDenied => 403,
        ResourceExhausted => 429,
        FailedPrecondition => 400,
        Aborted => 409,
        OutOfRange => 400,
        Unimplemented => 501,
        Internal => 500,
        Unavailable => 503,
        DataLoss => 500,
        Unauthenticated => 401,
    }
}

/// An etcd refusal as the gateway reports it: below 500 a reply whose body
/// is `{error, code, message}` (etcd 3.5's order); 500 and above, and every
/// transport failure, stay errors (`nil, err` in Lua), like lua-resty-etcd.
pub fn refusal(err: Error) -> Result<Reply, Error> {
    let Error::Status { status, .. } = &err else {
        return Err(err);
    };
    let http = http_status(status.code());
    if http >= 500 {
        return Err(err);
    }
    let msg = status.message().as_bytes().to_vec();
    let body = Value::Map(vec![
        ("error", Value::Str(msg.clone())),
        ("code", Value::Int(status.code() as i64)),
        ("message", Value::Str(msg)),
    ]);
    Ok(Reply {
        status: http,
        body: Body::Value(body),
        revision: None,
    })
}

impl Value {
    /// Renders the value as the gateway's compact JSON (for tests, golden
    /// comparisons and logs). Decoded raw bytes are written as text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Str(s) => write_json_str(out, &String::from_utf8_lossy(s)),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Value::Map(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_str(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::pb;

    /// A full response header at revision `rev`.
    pub fn hdr(rev: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: 15875391935852295136,
            member_id: 7383792418829112008,
            revision: rev,
            raft_term: 2,
        })
    }

    /// `hdr(1)` as the gateway writes it.
    pub const H1: &str = r#"{"cluster_id":"15875391935852295136","member_id":"7383792418829112008","revision":"1","raft_term":"2"}"#;
}

#[cfg(test)]
mod tests {
    use super::fixtures::hdr;
    use super::*;

    #[test]
    fn refusal_below_500_is_a_reply() {
        let e = Error::from_status(
            "http://h:1",
            tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
        );
        let r = refusal(e).unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body.to_json(),
            r#"{"error":"etcdserver: mvcc: required revision has been compacted","code":11,"message":"etcdserver: mvcc: required revision has been compacted"}"#
        );
    }

    #[test]
    fn refusal_from_500_stays_an_error() {
        let e = Error::from_status(
            "http://h:1",
            tonic::Status::unavailable("etcdserver: no leader"),
        );
        assert!(refusal(e).is_err());
        assert!(refusal(Error::Timeout).is_err());
    }

    #[test]
    fn status_table() {
        assert_eq!(http_status(tonic::Code::FailedPrecondition), 400);
        assert_eq!(http_status(tonic::Code::Cancelled), 408);
        assert_eq!(http_status(tonic::Code::Unauthenticated), 401);
        assert_eq!(http_status(tonic::Code::ResourceExhausted), 429);
    }

    #[test]
    fn version_shape() {
        let r = pb::StatusResponse {
            header: hdr(1),
            version: "3.5.1".into(),
            ..Default::default()
        };
        assert_eq!(
            version_reply(&r).body.to_json(),
            r#"{"etcdserver":"3.5.1","etcdcluster":"3.5.0"}"#
        );
    }
}
