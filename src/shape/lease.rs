//! The Lease service's answers (`grant`, `revoke`, `keepalive`,
//! `timetolive`, `leases`) in the gateway's shapes: IDs and TTLs as decimal
//! strings (a lease ID is an int64, beyond the 2^53 a Lua number holds),
//! keepalive inside `result` (the gateway serves it as a stream), and
//! timetolive's `keys` decoded, as lua-resty-etcd decodes them.

use super::{header, int, revision, Obj, Reply, Value};
use crate::pb::etcdserverpb::{
    LeaseGrantResponse as PbLeaseGrantResponse, LeaseKeepAliveResponse as PbLeaseKeepAliveResponse,
    LeaseLeasesResponse as PbLeaseLeasesResponse, LeaseRevokeResponse as PbLeaseRevokeResponse,
    LeaseTimeToLiveResponse as PbLeaseTimeToLiveResponse,
};

/// `grant`: `{header, ID, TTL, error}`.
pub fn grant_reply(r: &PbLeaseGrantResponse) -> Reply {
    let error = (!r.error.is_empty()).then(|| Value::Str(r.error.clone().into_bytes()));
    let body = Obj::new()
        .put("header", header(r.header.as_ref()))
        .put("ID", int(r.id))
        .put("TTL", int(r.ttl))
        .put("error", error)
        .done();
    Reply::ok(body, revision(r.header.as_ref()))
}

/// `revoke`: `{header}`.
pub fn revoke_reply(r: &PbLeaseRevokeResponse) -> Reply {
    let body = Obj::new().put("header", header(r.header.as_ref())).done();
    Reply::ok(body, revision(r.header.as_ref()))
}

/// `keepalive`: `{result = {header, ID, TTL}}`; an unknown lease answers
/// TTL 0, so `TTL` is absent.
pub fn keepalive_reply(r: &PbLeaseKeepAliveResponse) -> Reply {
    let result = Obj::new()
        .put("header", header(r.header.as_ref()))
        .put("ID", int(r.id))
        .put("TTL", int(r.ttl))
        .done();
    Reply::ok(
        Value::Map(vec![("result", result)]),
        revision(r.header.as_ref()),
    )
}

/// `timetolive`: `{header, ID, TTL, grantedTTL, keys}`; an unknown or
/// expired lease answers TTL -1 (present: only zero is omitted).
pub fn timetolive_reply(r: &PbLeaseTimeToLiveResponse) -> Reply {
    let keys = (!r.keys.is_empty())
        .then(|| Value::List(r.keys.iter().map(|k| Value::Str(k.clone())).collect()));
    let body = Obj::new()
        .put("header", header(r.header.as_ref()))
        .put("ID", int(r.id))
        .put("TTL", int(r.ttl))
        .put("grantedTTL", int(r.granted_ttl))
        .put("keys", keys)
        .done();
    Reply::ok(body, revision(r.header.as_ref()))
}

/// `leases`: `{header, leases = {{ID}, ...}}`, `leases` absent when none.
pub fn leases_reply(r: &PbLeaseLeasesResponse) -> Reply {
    let leases = (!r.leases.is_empty()).then(|| {
        Value::List(
            r.leases
                .iter()
                .map(|l| Obj::new().put("ID", int(l.id)).done())
                .collect(),
        )
    });
    let body = Obj::new()
        .put("header", header(r.header.as_ref()))
        .put("leases", leases)
        .done();
    Reply::ok(body, revision(r.header.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{hdr, H1};
    use super::*;
    use crate::pb::etcdserverpb::LeaseStatus as PbLeaseStatus;

    /// Above 2^53: a Lua number would round it.
    const BIG: i64 = 9_007_199_254_740_993;

    #[test]
    fn grant_matches_gateway_sample() {
        let r = PbLeaseGrantResponse {
            header: hdr(1),
            id: 12345,
            ttl: 60,
            error: String::new(),
        };
        let reply = grant_reply(&r);
        assert_eq!(
            reply.body.to_json(),
            format!(r#"{{"header":{H1},"ID":"12345","TTL":"60"}}"#)
        );
        assert_eq!(reply.revision, Some(1));
        let big = PbLeaseGrantResponse { id: BIG, ..r };
        assert!(grant_reply(&big)
            .body
            .to_json()
            .contains(r#""ID":"9007199254740993""#));
    }

    #[test]
    fn revoke_is_header_only() {
        let r = PbLeaseRevokeResponse { header: hdr(1) };
        assert_eq!(
            revoke_reply(&r).body.to_json(),
            format!(r#"{{"header":{H1}}}"#)
        );
    }

    #[test]
    fn keepalive_is_wrapped_in_result() {
        let r = PbLeaseKeepAliveResponse {
            header: hdr(1),
            id: 12345,
            ttl: 60,
        };
        assert_eq!(
            keepalive_reply(&r).body.to_json(),
            format!(r#"{{"result":{{"header":{H1},"ID":"12345","TTL":"60"}}}}"#)
        );
        // an unknown lease: TTL 0, absent
        let gone = PbLeaseKeepAliveResponse { ttl: 0, ..r };
        assert_eq!(
            keepalive_reply(&gone).body.to_json(),
            format!(r#"{{"result":{{"header":{H1},"ID":"12345"}}}}"#)
        );
    }

    #[test]
    fn timetolive_keys_decoded_and_unknown_is_minus_one() {
        let r = PbLeaseTimeToLiveResponse {
            header: hdr(1),
            id: BIG,
            ttl: 29,
            granted_ttl: 30,
            keys: vec![b"/l/a".to_vec(), vec![0, 255]],
        };
        let json = timetolive_reply(&r).body.to_json();
        assert!(json.ends_with(
            r#""ID":"9007199254740993","TTL":"29","grantedTTL":"30","keys":["/l/a","\u0000�"]}"#
        ));
        let unknown = PbLeaseTimeToLiveResponse {
            header: hdr(1),
            id: 999,
            ttl: -1,
            granted_ttl: 0,
            keys: vec![],
        };
        assert_eq!(
            timetolive_reply(&unknown).body.to_json(),
            format!(r#"{{"header":{H1},"ID":"999","TTL":"-1"}}"#)
        );
    }

    #[test]
    fn leases_list_and_empty() {
        let r = PbLeaseLeasesResponse {
            header: hdr(1),
            leases: vec![PbLeaseStatus { id: BIG }, PbLeaseStatus { id: 12345 }],
        };
        assert!(leases_reply(&r)
            .body
            .to_json()
            .ends_with(r#""leases":[{"ID":"9007199254740993"},{"ID":"12345"}]}"#));
        let none = PbLeaseLeasesResponse {
            header: hdr(1),
            leases: vec![],
        };
        assert_eq!(
            leases_reply(&none).body.to_json(),
            format!(r#"{{"header":{H1}}}"#)
        );
    }
}
