//! The KV service's answers (`get`, `readdir`, `set`, `delete`, `rmdir`,
//! `txn`) in the gateway's shapes.

use super::{flag, header, header_field, int, revision, Body, Bytes, Obj, Reply, Value};
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb::KeyValue as PbKeyValue;
use crate::sink::{Sink, ValueSink};

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

pub(crate) fn kvs(list: &[PbKeyValue], bytes: Bytes) -> Option<Value> {
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{hdr, H1};
    use super::*;

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
}
