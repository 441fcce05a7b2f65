//! The Watch service's streamed responses in the gateway's framing.

use super::kv::kv;
use super::{flag, header, int, Bytes, Obj, Reply, Value};
use crate::pb::etcdserverpb as pb;

/// One streamed watch response as the gateway frames it:
/// `{result = {header, watch_id, created, canceled, compact_revision,
/// cancel_reason, events}}`. `watch_id` is the one the caller asked for
/// (the gateway gives every watch its own stream, so ids are the caller's);
/// fragments were merged before this, so `fragment` never appears.
pub fn response(r: &pb::WatchResponse, watch_id: i64) -> Value {
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

/// One watch read's answer: a response as a reply (no revision header,
/// as the gateway's stream sends none per message).
pub fn read_reply(r: &pb::WatchResponse, watch_id: i64) -> Reply {
    Reply::ok(response(r, watch_id), None)
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{hdr, H1};
    use super::*;
    use crate::pb::mvccpb::KeyValue as PbKeyValue;

    #[test]
    fn watch_shapes() {
        use crate::pb::mvccpb::{event::EventType, Event};
        let created = pb::WatchResponse {
            header: hdr(14),
            created: true,
            ..Default::default()
        };
        assert_eq!(
            response(&created, 0).to_json(),
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
        assert!(response(&del, 7).to_json().ends_with(
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
            response(&compacted, 0).to_json(),
            r#"{"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"6"}}"#
        );
    }
}
