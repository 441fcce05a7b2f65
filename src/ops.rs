//! The operations Lua can ask for, and how each one runs: call the etcd
//! service, then shape the answer (or etcd's refusal) into a [`Reply`].

use std::sync::Arc;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::{
    DeleteRangeRequest as PbDeleteRangeRequest, LeaseGrantRequest as PbLeaseGrantRequest,
    LeaseTimeToLiveRequest as PbLeaseTimeToLiveRequest, PutRequest as PbPutRequest,
    RangeRequest as PbRangeRequest, TxnRequest as PbTxnRequest,
};
use crate::shape::{self, Reply};
use crate::{kv, lease, maintenance};

/// One request, fully validated, ready to send.
#[derive(Debug, Clone)]
pub enum Op {
    /// `get`, `readdir`.
    Range(PbRangeRequest),
    /// `set`.
    Put(PbPutRequest),
    /// `delete`, `rmdir`.
    DeleteRange(PbDeleteRangeRequest),
    /// `txn`, `setnx`, `setx`.
    Txn(PbTxnRequest),
    /// `version`.
    Version,
    /// `grant`.
    LeaseGrant(PbLeaseGrantRequest),
    /// `revoke`.
    LeaseRevoke(i64),
    /// `keepalive`: a single renewal.
    LeaseKeepAlive(i64),
    /// `timetolive`.
    LeaseTimeToLive(PbLeaseTimeToLiveRequest),
    /// `leases`.
    LeaseLeases,
    /// `keeper:wait(timeout)`: the keeper's state once it is no longer
    /// alive, or when the timeout passed.
    KeeperWait(Arc<lease::keeper::Keeper>, std::time::Duration),
    /// A request refused before reaching etcd, as the gateway refuses it.
    Refuse(String),
    /// The next response of a watcher.
    WatchRead(Arc<crate::watch::Watcher>),
    /// Test builds only: panics inside the runtime.
    #[cfg(feature = "test-hooks")]
    Panic,
    /// Test builds only: completes at once, to measure the hand-off alone.
    #[cfg(feature = "test-hooks")]
    Noop,
    /// Test builds only: blocks the runtime thread for this many ms, so a
    /// test can make things happen that the runtime notices only later.
    #[cfg(feature = "test-hooks")]
    Stall(u64),
}

/// Runs `op` on `conn` with the caller's metadata and shapes the outcome.
/// etcd's refusals below HTTP 500 become replies; everything else that
/// fails stays an error.
pub async fn execute(conn: Arc<Connection>, meta: Metadata, op: Op) -> Result<Reply> {
    let meta = &meta;
    let outcome = match op {
        Op::Range(req) => kv::range(&conn, meta, req)
            .await
            .map(shape::kv::range_reply),
        Op::Put(req) => kv::put(&conn, meta, req).await.map(shape::kv::put_reply),
        Op::DeleteRange(req) => kv::delete_range(&conn, meta, req)
            .await
            .map(|r| shape::kv::delete_reply(&r)),
        Op::Txn(req) => kv::txn(&conn, meta, req)
            .await
            .map(|r| shape::kv::txn_reply(&r)),
        Op::Refuse(msg) => Err(Error::bad_request(msg)),
        Op::WatchRead(w) => w
            .next()
            .await
            .map(|r| shape::watch::read_reply(&r, w.watch_id())),
        Op::Version => maintenance::status(&conn, meta)
            .await
            .map(|r| shape::version_reply(&r)),
        Op::LeaseGrant(req) => lease::grant(&conn, meta, req)
            .await
            .map(|r| shape::lease::grant_reply(&r)),
        Op::LeaseRevoke(id) => lease::revoke(&conn, meta, id)
            .await
            .map(|r| shape::lease::revoke_reply(&r)),
        Op::LeaseKeepAlive(id) => lease::keep_alive_once(&conn, meta, id)
            .await
            .map(|r| shape::lease::keepalive_reply(&r)),
        Op::LeaseTimeToLive(req) => lease::time_to_live(&conn, meta, req)
            .await
            .map(|r| shape::lease::timetolive_reply(&r)),
        Op::LeaseLeases => lease::leases(&conn, meta)
            .await
            .map(|r| shape::lease::leases_reply(&r)),
        Op::KeeperWait(k, timeout) => {
            let state = k.wait(timeout).await;
            Ok(Reply::ok(
                shape::Value::Str(state.as_str().as_bytes().to_vec()),
                None,
            ))
        }
        #[cfg(feature = "test-hooks")]
        Op::Panic => panic!("etcd_grpc test hook: deliberate panic"),
        #[cfg(feature = "test-hooks")]
        Op::Noop => Ok(Reply::ok(shape::Value::Map(Vec::new()), None)),
        #[cfg(feature = "test-hooks")]
        Op::Stall(ms) => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(Reply::ok(shape::Value::Map(Vec::new()), None))
        }
    };
    outcome.or_else(shape::refusal)
}
