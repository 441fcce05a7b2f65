//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use crate::connection::Connection;
use crate::error::Result;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::{
    PutRequest as PbPutRequest, PutResponse as PbPutResponse, RangeRequest as PbRangeRequest,
    RangeResponse as PbRangeResponse,
};

/// Reads a key or a range.
pub async fn range(conn: &Connection, req: PbRangeRequest) -> Result<PbRangeResponse> {
    let max = conn.max_recv();
    conn.unary(|ch| async move {
        KvClient::new(ch)
            .max_decoding_message_size(max)
            .range(req)
            .await
    })
    .await
}

/// Writes a key.
pub async fn put(conn: &Connection, req: PbPutRequest) -> Result<PbPutResponse> {
    let max = conn.max_recv();
    conn.unary(|ch| async move {
        KvClient::new(ch)
            .max_decoding_message_size(max)
            .put(req)
            .await
    })
    .await
}
