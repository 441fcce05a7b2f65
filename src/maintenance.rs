//! etcd's Maintenance service: Status (behind `version()`).

use crate::connection::{Connection, Retry};
use crate::error::Result;
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::pb::etcdserverpb::{
    StatusRequest as PbStatusRequest, StatusResponse as PbStatusResponse,
};

/// The status of the member the connection talks to.
pub async fn status(conn: &Connection, meta: &Metadata) -> Result<PbStatusResponse> {
    conn.unary(
        Retry::Read,
        meta,
        PbStatusRequest {},
        |ch, req| async move { MaintenanceClient::new(ch).status(req).await },
    )
    .await
}
