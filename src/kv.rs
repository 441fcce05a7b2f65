//! etcd's KV service: Range, Put, DeleteRange, Txn.

use crate::connection::Connection;
use crate::error::Result;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::{
    DeleteRangeRequest as PbDeleteRangeRequest, DeleteRangeResponse as PbDeleteRangeResponse,
    PutRequest as PbPutRequest, PutResponse as PbPutResponse, RangeRequest as PbRangeRequest,
    RangeResponse as PbRangeResponse, TxnRequest as PbTxnRequest, TxnResponse as PbTxnResponse,
};

/// Makes one KV call with the connection's response size limit.
macro_rules! kv_call {
    ($conn:expr, $method:ident, $req:expr) => {{
        let max = $conn.max_recv();
        let req = $req;
        $conn
            .unary(|ch| async move {
                KvClient::new(ch)
                    .max_decoding_message_size(max)
                    .$method(req)
                    .await
            })
            .await
    }};
}

/// Reads a key or a range.
pub async fn range(conn: &Connection, req: PbRangeRequest) -> Result<PbRangeResponse> {
    kv_call!(conn, range, req)
}

/// Writes a key.
pub async fn put(conn: &Connection, req: PbPutRequest) -> Result<PbPutResponse> {
    kv_call!(conn, put, req)
}

/// Deletes a key or a range.
pub async fn delete_range(
    conn: &Connection,
    req: PbDeleteRangeRequest,
) -> Result<PbDeleteRangeResponse> {
    kv_call!(conn, delete_range, req)
}

/// Runs a transaction.
pub async fn txn(conn: &Connection, req: PbTxnRequest) -> Result<PbTxnResponse> {
    kv_call!(conn, txn, req)
}
