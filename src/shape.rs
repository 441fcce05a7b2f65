//! Typed etcd results to the values lua-resty-etcd's HTTP mode hands back:
//! the gRPC gateway's JSON conventions, already decoded the way that library
//! decodes them.
//!
//! The rules (reference/gateway-json.md): int64/uint64 become decimal
//! strings; zero values are omitted (no `kvs` on a miss, no `lease` when 0);
//! field names are etcd's proto names; members come in field-number order.
//! Keys and values of `kvs` are raw bytes (lua-resty-etcd base64-decodes
//! them), elsewhere bytes stay base64 exactly as the gateway sent them.

use crate::error::Error;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb::KeyValue as PbKeyValue;
use crate::sink::{Sink, ValueSink};

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
            Body::Range(r) => write_range(r, Bytes::Decoded, s),
            Body::Put(r) => write_put(r, s),
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
struct Obj(Vec<(&'static str, Value)>);

impl Obj {
    fn new() -> Obj {
        Obj(Vec::with_capacity(6))
    }
    fn put(mut self, name: &'static str, v: Option<Value>) -> Obj {
        if let Some(v) = v {
            self.0.push((name, v));
        }
        self
    }
    fn done(self) -> Value {
        Value::Map(self.0)
    }
}

/// An int64 as the gateway writes it: a decimal string, absent when zero.
fn int(n: i64) -> Option<Value> {
    (n != 0).then(|| Value::Str(n.to_string().into_bytes()))
}

/// `true`, or absent.
fn flag(b: bool) -> Option<Value> {
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
fn header_field(h: Option<&pb::ResponseHeader>, s: &mut impl Sink) {
    if let Some(h) = h {
        write_header(h, s);
        s.field("header");
    }
}

fn revision(h: Option<&pb::ResponseHeader>) -> Option<i64> {
    h.map(|h| h.revision)
}

/// One key-value.
pub fn kv(kv: &PbKeyValue, bytes: Bytes) -> Value {
    ValueSink::build(|s| write_kv(kv, bytes, s))
}

/// Writes one key-value.
pub fn write_kv(kv: &PbKeyValue, bytes: Bytes, s: &mut impl Sink) {
    s.map(6);
    match bytes {
        Bytes::Base64 => s.b64_field("key", &kv.key),
        Bytes::Decoded | Bytes::Event => s.str_field("key", &kv.key),
    }
    s.int_field("create_revision", kv.create_revision);
    s.int_field("mod_revision", kv.mod_revision);
    s.int_field("version", kv.version);
    match bytes {
        Bytes::Decoded => s.str_field("value", &kv.value),
        Bytes::Base64 => s.b64_field("value", &kv.value),
        Bytes::Event if !kv.value.is_empty() => s.str_field("value", &kv.value),
        Bytes::Event => {}
    }
    s.int_field("lease", kv.lease);
}

fn kvs(list: &[PbKeyValue], bytes: Bytes) -> Option<Value> {
    (!list.is_empty()).then(|| Value::List(list.iter().map(|k| kv(k, bytes)).collect()))
}

/// A Range answer (`get`, `readdir`).
pub fn range(r: &pb::RangeResponse, bytes: Bytes) -> Value {
    ValueSink::build(|s| write_range(r, bytes, s))
}

/// Writes a Range answer.
pub fn write_range(r: &pb::RangeResponse, bytes: Bytes, s: &mut impl Sink) {
    s.map(4);
    header_field(r.header.as_ref(), s);
    if !r.kvs.is_empty() {
        s.list(r.kvs.len());
        for (i, k) in r.kvs.iter().enumerate() {
            write_kv(k, bytes, s);
            s.item(i);
        }
        s.field("kvs");
    }
    s.flag_field("more", r.more);
    s.int_field("count", r.count);
}

/// A Range answer as a reply: kept typed, shaped where it is delivered.
pub fn range_reply(r: pb::RangeResponse) -> Reply {
    let revision = revision(r.header.as_ref());
    Reply::typed(Body::Range(r), revision)
}

/// A Put answer (`set`).
pub fn put(r: &pb::PutResponse) -> Value {
    ValueSink::build(|s| write_put(r, s))
}

/// Writes a Put answer.
pub fn write_put(r: &pb::PutResponse, s: &mut impl Sink) {
    s.map(2);
    header_field(r.header.as_ref(), s);
    if let Some(k) = &r.prev_kv {
        write_kv(k, Bytes::Base64, s);
        s.field("prev_kv");
    }
}

/// A Put answer as a reply: kept typed, shaped where it is delivered.
pub fn put_reply(r: pb::PutResponse) -> Reply {
    let revision = revision(r.header.as_ref());
    Reply::typed(Body::Put(r), revision)
}

/// A DeleteRange answer (`delete`, `rmdir`): `deleted` absent when 0.
pub fn delete(r: &pb::DeleteRangeResponse) -> Value {
    Obj::new()
        .put("header", header(r.header.as_ref()))
        .put("deleted", int(r.deleted))
        .put("prev_kvs", kvs(&r.prev_kvs, Bytes::Base64))
        .done()
}

/// A DeleteRange answer as a reply.
pub fn delete_reply(r: &pb::DeleteRangeResponse) -> Reply {
    Reply::ok(delete(r), revision(r.header.as_ref()))
}

/// A Txn answer: `succeeded` absent when false; `responses` as the gateway
/// sends them (one-key objects, bytes in base64, nested headers as etcd
/// fills them: revision only).
pub fn txn(r: &pb::TxnResponse) -> Value {
    let responses = (!r.responses.is_empty())
        .then(|| Value::List(r.responses.iter().map(response_op).collect()));
    Obj::new()
        .put("header", header(r.header.as_ref()))
        .put("succeeded", flag(r.succeeded))
        .put("responses", responses)
        .done()
}

/// A Txn answer as a reply.
pub fn txn_reply(r: &pb::TxnResponse) -> Reply {
    Reply::ok(txn(r), revision(r.header.as_ref()))
}

fn response_op(op: &pb::ResponseOp) -> Value {
    use pb::response_op::Response;
    let (name, body) = match &op.response {
        Some(Response::ResponseRange(r)) => ("response_range", range(r, Bytes::Base64)),
        Some(Response::ResponsePut(r)) => ("response_put", put(r)),
        Some(Response::ResponseDeleteRange(r)) => ("response_delete_range", delete(r)),
        Some(Response::ResponseTxn(r)) => ("response_txn", txn(r)),
        None => return Value::Map(Vec::new()),
    };
    Value::Map(vec![(name, body)])
}

/// One streamed watch response as the gateway frames it:
/// `{result = {header, watch_id, created, canceled, compact_revision,
/// cancel_reason, events}}`. `watch_id` is the one the caller asked for
/// (the gateway gives every watch its own stream, so ids are the caller's);
/// fragments were merged before this, so `fragment` never appears.
pub fn watch_response(r: &pb::WatchResponse, watch_id: i64) -> Value {
    let events = (!r.events.is_empty()).then(|| Value::List(r.events.iter().map(event).collect()));
    let reason =
        (!r.cancel_reason.is_empty()).then(|| Value::Str(r.cancel_reason.clone().into_bytes()));
    let result = Obj::new()
        .put("header", header(r.header.as_ref()))
        .put("watch_id", int(watch_id))
        .put("created", flag(r.created))
        .put("canceled", flag(r.canceled))
        .put("compact_revision", int(r.compact_revision))
        .put("cancel_reason", reason)
        .put("events", events)
        .done();
    Value::Map(vec![("result", result)])
}

fn event(e: &crate::pb::mvccpb::Event) -> Value {
    let kind = (e.r#type == crate::pb::mvccpb::event::EventType::Delete as i32)
        .then(|| Value::Str(b"DELETE".to_vec()));
    Obj::new()
        .put("type", kind)
        .put("kv", e.kv.as_ref().map(|k| kv(k, Bytes::Event)))
        .put("prev_kv", e.prev_kv.as_ref().map(|k| kv(k, Bytes::Event)))
        .done()
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
mod tests {
    use super::*;

    fn hdr(rev: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: 15875391935852295136,
            member_id: 7383792418829112008,
            revision: rev,
            raft_term: 2,
        })
    }

    const H1: &str = r#"{"cluster_id":"15875391935852295136","member_id":"7383792418829112008","revision":"1","raft_term":"2"}"#;

    #[test]
    fn range_miss_has_only_header() {
        let r = pb::RangeResponse {
            header: hdr(1),
            ..Default::default()
        };
        assert_eq!(
            range(&r, Bytes::Base64).to_json(),
            format!(r#"{{"header":{H1}}}"#)
        );
        assert_eq!(range_reply(r.clone()).revision, Some(1));
    }

    #[test]
    fn typed_replies_shape_like_their_trees() {
        // get's body: keys and values raw, an empty value still present
        let r = pb::RangeResponse {
            header: hdr(5),
            kvs: vec![PbKeyValue {
                key: b"/k".to_vec(),
                create_revision: 2,
                mod_revision: 5,
                version: 3,
                value: Vec::new(),
                lease: 7,
            }],
            count: 1,
            ..Default::default()
        };
        let reply = range_reply(r.clone());
        assert_eq!(reply.body.value(), range(&r, Bytes::Decoded));
        assert!(reply.body.to_json().contains(
            r#""kvs":[{"key":"/k","create_revision":"2","mod_revision":"5","version":"3","value":"","lease":"7"}],"count":"1"}"#
        ));
        let p = pb::PutResponse {
            header: hdr(6),
            prev_kv: r.kvs.first().cloned(),
        };
        assert_eq!(put_reply(p.clone()).body.value(), put(&p));
        assert_eq!(put_reply(p).revision, Some(6));
    }

    #[test]
    fn range_hit_matches_gateway_sample() {
        // gateway-json.md: a key whose value was set to "" (base64 form).
        let r = pb::RangeResponse {
            header: hdr(3),
            kvs: vec![PbKeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: vec![],
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = range(&r, Bytes::Base64).to_json();
        assert!(json.ends_with(
            r#""kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2"}],"count":"1"}"#
        ));
        // decoded form keeps raw bytes and an empty value for the deserializer
        let Value::Map(m) = range(&r, Bytes::Decoded) else {
            panic!()
        };
        let Value::List(kvs) = &m[1].1 else { panic!() };
        assert_eq!(
            kvs[0].to_json(),
            r#"{"key":"foo","create_revision":"2","mod_revision":"3","version":"2","value":""}"#
        );
    }

    #[test]
    fn more_and_lease() {
        let r = pb::RangeResponse {
            header: hdr(5),
            kvs: vec![PbKeyValue {
                key: b"a".to_vec(),
                lease: 1353509840801893644,
                value: b"x".to_vec(),
                ..Default::default()
            }],
            more: true,
            count: 3,
        };
        let json = range(&r, Bytes::Base64).to_json();
        assert!(json
            .contains(r#""value":"eA==","lease":"1353509840801893644"}],"more":true,"count":"3""#));
    }

    #[test]
    fn put_prev_kv_stays_base64() {
        let r = pb::PutResponse {
            header: hdr(3),
            prev_kv: Some(PbKeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }),
        };
        assert!(put(&r).to_json().ends_with(
            r#""prev_kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}"#
        ));
        let bare = pb::PutResponse {
            header: hdr(3),
            prev_kv: None,
        };
        assert!(!put(&bare).to_json().contains("prev_kv"));
    }

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
    fn delete_shapes() {
        let none = pb::DeleteRangeResponse {
            header: hdr(4),
            ..Default::default()
        };
        assert_eq!(
            delete(&none).to_json(),
            format!(r#"{{"header":{}}}"#, H1.replace(r#""1""#, r#""4""#))
        );
        let one = pb::DeleteRangeResponse {
            header: hdr(4),
            deleted: 1,
            prev_kvs: vec![PbKeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                ..Default::default()
            }],
        };
        assert!(delete(&one).to_json().ends_with(
            r#""deleted":"1","prev_kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2"}]}"#
        ));
    }

    #[test]
    fn txn_matches_gateway_samples() {
        use pb::response_op::Response;
        let nested = |rev| {
            Some(pb::ResponseHeader {
                revision: rev,
                ..Default::default()
            })
        };
        let ok = pb::TxnResponse {
            header: hdr(8),
            succeeded: true,
            responses: vec![
                pb::ResponseOp {
                    response: Some(Response::ResponsePut(pb::PutResponse {
                        header: nested(8),
                        prev_kv: None,
                    })),
                },
                pb::ResponseOp {
                    response: Some(Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                        header: nested(8),
                        ..Default::default()
                    })),
                },
            ],
        };
        assert!(txn(&ok).to_json().ends_with(
            r#""succeeded":true,"responses":[{"response_put":{"header":{"revision":"8"}}},{"response_delete_range":{"header":{"revision":"8"}}}]}"#
        ));
        let failed = pb::TxnResponse {
            header: hdr(8),
            succeeded: false,
            responses: vec![pb::ResponseOp {
                response: Some(Response::ResponseRange(pb::RangeResponse {
                    header: nested(8),
                    ..Default::default()
                })),
            }],
        };
        let json = txn(&failed).to_json();
        assert!(!json.contains("succeeded"));
        assert!(json.ends_with(r#""responses":[{"response_range":{"header":{"revision":"8"}}}]}"#));
    }

    #[test]
    fn watch_shapes() {
        use crate::pb::mvccpb::{event::EventType, Event};
        let created = pb::WatchResponse {
            header: hdr(14),
            created: true,
            ..Default::default()
        };
        assert_eq!(
            watch_response(&created, 0).to_json(),
            format!(
                r#"{{"result":{{"header":{},"created":true}}}}"#,
                H1.replace(r#""1""#, r#""14""#)
            )
        );
        let del = pb::WatchResponse {
            header: hdr(17),
            watch_id: 3,
            events: vec![Event {
                r#type: EventType::Delete as i32,
                kv: Some(PbKeyValue {
                    key: b"w".to_vec(),
                    mod_revision: 17,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        assert!(watch_response(&del, 7).to_json().ends_with(
            r#""watch_id":"7","events":[{"type":"DELETE","kv":{"key":"w","mod_revision":"17"}}]}}"#
        ));
        let compacted = pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 0,
                raft_term: 2,
            }),
            canceled: true,
            compact_revision: 6,
            ..Default::default()
        };
        assert_eq!(
            watch_response(&compacted, 0).to_json(),
            r#"{"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"6"}}"#
        );
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
