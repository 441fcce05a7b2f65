//! etcd's Maintenance service: Status (behind `version()`).

use crate::connection::Connection;
use crate::error::Result;
use crate::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::pb::etcdserverpb::{
    StatusRequest as PbStatusRequest, StatusResponse as PbStatusResponse,
};

/// The status of the member the connection talks to.
pub async fn status(conn: &Connection) -> Result<PbStatusResponse> {
    conn.unary(|ch| async move { MaintenanceClient::new(ch).status(PbStatusRequest {}).await })
        .await
}
