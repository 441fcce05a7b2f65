//! etcd's Lease service: the unary calls (grant, revoke, a single
//! keepalive, time-to-live, list) and, in [`keeper`], the background
//! keepers that renew leases over one shared LeaseKeepAlive stream.

use crate::connection::{Connection, Retry};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest as PbLeaseGrantRequest, LeaseGrantResponse as PbLeaseGrantResponse,
    LeaseKeepAliveRequest as PbLeaseKeepAliveRequest,
    LeaseKeepAliveResponse as PbLeaseKeepAliveResponse, LeaseLeasesRequest as PbLeaseLeasesRequest,
    LeaseLeasesResponse as PbLeaseLeasesResponse, LeaseRevokeRequest as PbLeaseRevokeRequest,
    LeaseRevokeResponse as PbLeaseRevokeResponse,
    LeaseTimeToLiveRequest as PbLeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse as PbLeaseTimeToLiveResponse,
};

pub mod keeper;

/// A lease ID given as text: decimal, surrounding blanks ignored, the
/// whole int64 range exact (Lua numbers stop being exact at 2^53, so IDs
/// travel as strings).
pub fn parse_id(text: &str) -> Result<i64> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| Error::InvalidArgument("ID must be integer".into()))
}

/// Makes one unary Lease call.
macro_rules! lease_call {
    ($conn:expr, $retry:expr, $meta:expr, $method:ident, $req:expr) => {{
        let max = $conn.max_recv();
        $conn
            .unary($retry, $meta, $req, |ch, req| async move {
                LeaseClient::new(ch)
                    .max_decoding_message_size(max)
                    .$method(req)
                    .await
            })
            .await
    }};
}

/// Grants a lease (`ID` 0: etcd picks one).
pub async fn grant(
    conn: &Connection,
    meta: &Metadata,
    req: PbLeaseGrantRequest,
) -> Result<PbLeaseGrantResponse> {
    lease_call!(conn, Retry::Write, meta, lease_grant, req)
}

/// Revokes a lease, deleting its keys.
pub async fn revoke(conn: &Connection, meta: &Metadata, id: i64) -> Result<PbLeaseRevokeResponse> {
    lease_call!(
        conn,
        Retry::Write,
        meta,
        lease_revoke,
        PbLeaseRevokeRequest { id }
    )
}

/// A lease's remaining and granted TTL, and its keys when asked.
pub async fn time_to_live(
    conn: &Connection,
    meta: &Metadata,
    req: PbLeaseTimeToLiveRequest,
) -> Result<PbLeaseTimeToLiveResponse> {
    lease_call!(conn, Retry::Read, meta, lease_time_to_live, req)
}

/// Every lease etcd holds.
pub async fn leases(conn: &Connection, meta: &Metadata) -> Result<PbLeaseLeasesResponse> {
    lease_call!(
        conn,
        Retry::Read,
        meta,
        lease_leases,
        PbLeaseLeasesRequest {}
    )
}

/// One renewal, as the gateway makes it: a LeaseKeepAlive stream that
/// carries a single request and ends after its answer. On the CRUD
/// channel: it is a request like any other, not a long-lived stream.
pub async fn keep_alive_once(
    conn: &Connection,
    meta: &Metadata,
    id: i64,
) -> Result<PbLeaseKeepAliveResponse> {
    let meta = &conn.authorize(meta).await?;
    let route = conn.crud()?;
    let one = futures::stream::iter([PbLeaseKeepAliveRequest { id }]);
    let mut client =
        LeaseClient::new(route.channel.clone()).max_decoding_message_size(conn.max_recv());
    let mut stream = match Box::pin(client.lease_keep_alive(meta.request(one))).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => return Err(conn.failed(&route, status)),
    };
    match stream.message().await {
        Ok(Some(resp)) => Ok(resp),
        Ok(None) => Err(Error::NoAnswer {
            endpoint: route.endpoint,
        }),
        Err(status) => Err(conn.failed(&route, status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_exactly_over_the_whole_int64_range() {
        assert_eq!(parse_id("9007199254740993").unwrap(), 9_007_199_254_740_993);
        assert_eq!(parse_id(" 12345 ").unwrap(), 12345);
        assert_eq!(parse_id("9223372036854775807").unwrap(), i64::MAX);
        assert_eq!(parse_id("-1").unwrap(), -1);
        for bad in ["", "12x", "0x10", "1.5", "9223372036854775808", "1e3"] {
            let e = parse_id(bad).unwrap_err();
            assert_eq!(e.to_string(), "ID must be integer", "{bad:?}");
        }
    }
}
