//! etcd's KV service: Range, Put, DeleteRange, Txn.

use crate::connection::{Connection, Retry};
use crate::error::Result;
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::{
    DeleteRangeRequest as PbDeleteRangeRequest, DeleteRangeResponse as PbDeleteRangeResponse,
    PutRequest as PbPutRequest, PutResponse as PbPutResponse, RangeRequest as PbRangeRequest,
    RangeResponse as PbRangeResponse, TxnRequest as PbTxnRequest, TxnResponse as PbTxnResponse,
};

/// Makes one KV call with the connection's response size limit.
macro_rules! kv_call {
    ($conn:expr, $retry:expr, $meta:expr, $method:ident, $req:expr) => {{
        let max = $conn.max_recv();
        $conn
            .unary($retry, $meta, $req, |ch, req| async move {
                KvClient::new(ch)
                    .max_decoding_message_size(max)
                    .$method(req)
                    .await
            })
            .await
    }};
}

/// Reads a key or a range.
pub async fn range(
    conn: &Connection,
    meta: &Metadata,
    req: PbRangeRequest,
) -> Result<PbRangeResponse> {
    kv_call!(conn, Retry::Read, meta, range, req)
}

/// Writes a key.
pub async fn put(conn: &Connection, meta: &Metadata, req: PbPutRequest) -> Result<PbPutResponse> {
    kv_call!(conn, Retry::Write, meta, put, req)
}

/// Deletes a key or a range.
pub async fn delete_range(
    conn: &Connection,
    meta: &Metadata,
    req: PbDeleteRangeRequest,
) -> Result<PbDeleteRangeResponse> {
    kv_call!(conn, Retry::Write, meta, delete_range, req)
}

/// Runs a transaction.
pub async fn txn(conn: &Connection, meta: &Metadata, req: PbTxnRequest) -> Result<PbTxnResponse> {
    kv_call!(conn, Retry::Write, meta, txn, req)
}
