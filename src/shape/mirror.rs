//! A mirror's deltas as the values the binding hands to the façade's
//! applier: raw keys and values (the façade deserializes each value once),
//! revisions as decimal strings.

use super::Value;
use crate::mirror::Delta;
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::{Event as PbEvent, KeyValue as PbKeyValue};

/// `{kind = "reset", revision, resync?, keys = {...}, values = {...}}`,
/// `{kind = "events", revision, events = {{key, value?, delete?,
/// revision}, ...}}` or `{kind = "progress", revision}`.
pub fn delta(d: &Delta) -> Value {
    match d {
        Delta::Reset {
            revision,
            kvs,
            resync,
        } => {
            let mut m = vec![("kind", text("reset")), ("revision", dec(*revision))];
            if *resync {
                m.push(("resync", Value::Bool(true)));
            }
            m.push(("keys", Value::List(kvs.iter().map(key).collect())));
            m.push(("values", Value::List(kvs.iter().map(value).collect())));
            Value::Map(m)
        }
        Delta::Events { revision, events } => Value::Map(vec![
            ("kind", text("events")),
            ("revision", dec(*revision)),
            ("events", Value::List(events.iter().map(event).collect())),
        ]),
        Delta::Progress { revision } => Value::Map(vec![
            ("kind", text("progress")),
            ("revision", dec(*revision)),
        ]),
    }
}

fn event(e: &PbEvent) -> Value {
    let Some(kv) = e.kv.as_ref() else {
        return Value::Map(Vec::new());
    };
    let mut m = vec![("key", key(kv))];
    if e.r#type == EventType::Delete as i32 {
        m.push(("delete", Value::Bool(true)));
    } else {
        m.push(("value", value(kv)));
    }
    m.push(("revision", dec(kv.mod_revision)));
    Value::Map(m)
}

fn key(kv: &PbKeyValue) -> Value {
    Value::Str(kv.key.clone())
}

fn value(kv: &PbKeyValue) -> Value {
    Value::Str(kv.value.clone())
}

fn text(s: &str) -> Value {
    Value::Str(s.as_bytes().to_vec())
}

fn dec(n: i64) -> Value {
    Value::Str(n.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str, rev: i64) -> PbKeyValue {
        PbKeyValue {
            key: k.into(),
            value: v.into(),
            mod_revision: rev,
            ..Default::default()
        }
    }

    #[test]
    fn deltas_shape() {
        let reset = Delta::Reset {
            revision: 9,
            kvs: vec![kv("/a", "1", 3), kv("/b", "", 4)],
            resync: true,
        };
        assert_eq!(
            delta(&reset).to_json(),
            r#"{"kind":"reset","revision":"9","resync":true,"keys":["/a","/b"],"values":["1",""]}"#
        );
        let first = Delta::Reset {
            revision: 1,
            kvs: vec![],
            resync: false,
        };
        assert_eq!(
            delta(&first).to_json(),
            r#"{"kind":"reset","revision":"1","keys":[],"values":[]}"#
        );
        let events = Delta::Events {
            revision: 12,
            events: vec![
                PbEvent {
                    r#type: EventType::Put as i32,
                    kv: Some(kv("/a", "2", 11)),
                    prev_kv: None,
                },
                PbEvent {
                    r#type: EventType::Delete as i32,
                    kv: Some(kv("/b", "", 12)),
                    prev_kv: None,
                },
            ],
        };
        assert_eq!(
            delta(&events).to_json(),
            r#"{"kind":"events","revision":"12","events":[{"key":"/a","value":"2","revision":"11"},{"key":"/b","delete":true,"revision":"12"}]}"#
        );
        assert_eq!(
            delta(&Delta::Progress { revision: 40 }).to_json(),
            r#"{"kind":"progress","revision":"40"}"#
        );
    }
}
