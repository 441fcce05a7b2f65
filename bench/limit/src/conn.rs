//! The two channels, made exactly as etcd_grpc makes them, and the small
//! pieces every command builds requests from.

use etcd_grpc_core::connection::{Config, Connection, UNLIMITED};
use etcd_grpc_core::pb::etcdserverpb::kv_client::KvClient;
use etcd_grpc_core::pb::etcdserverpb::watch_client::WatchClient;
use etcd_grpc_core::pb::etcdserverpb::PutRequest as PbPutRequest;
use tonic::transport::Channel;

use crate::Result;

/// etcd_grpc's two connections: unary calls on `crud`, watch streams on
/// `watch`. Both dial lazily, on their first call.
pub struct Channels {
    /// Shared by every concurrent unary call.
    pub crud: Channel,
    /// Carries the one Watch stream of a command.
    pub watch: Channel,
    /// The `http://host:port` both dial.
    pub endpoint: String,
}

impl Channels {
    /// Dials `endpoint` with etcd_grpc's own channel settings (TCP_NODELAY,
    /// HTTP/2 keepalive, 16 MiB/8 MiB windows) by asking its `Connection`
    /// for its channels. Must run inside the runtime.
    pub fn open(endpoint: &str) -> Result<Channels> {
        let conn = Connection::new(Config::new(vec![endpoint.to_string()]))?;
        Ok(Channels {
            crud: conn.crud()?.channel,
            watch: conn.sync()?.channel,
            endpoint: endpoint.to_string(),
        })
    }

    /// A KV client on the CRUD channel, with no response size limit (as
    /// etcd_grpc's default).
    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.crud.clone()).max_decoding_message_size(UNLIMITED)
    }

    /// A Watch client on the watch channel, with no response size limit.
    pub fn watcher(&self) -> WatchClient<Channel> {
        WatchClient::new(self.watch.clone()).max_decoding_message_size(UNLIMITED)
    }
}

/// The TCP port of an `http://host:port` endpoint.
pub fn port_of(endpoint: &str) -> Result<u16> {
    let uri: tonic::codegen::http::Uri = endpoint
        .parse()
        .map_err(|e| format!("invalid endpoint {endpoint}: {e}"))?;
    uri.port_u16()
        .ok_or_else(|| format!("endpoint {endpoint} names no port").into())
}

/// The end of the range of every key starting with `prefix`, as etcd
/// computes it: the last byte below 0xff incremented, what follows dropped.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix is empty): to the end of keyspace.
    vec![0]
}

/// A value of `size` bytes.
pub fn filler(size: usize) -> Vec<u8> {
    vec![b'x'; size]
}

/// A Put of `value` to `key`.
pub fn put_request(key: impl Into<Vec<u8>>, value: Vec<u8>) -> PbPutRequest {
    PbPutRequest {
        key: key.into(),
        value,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_etcds() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn port_from_endpoint() {
        assert_eq!(port_of("http://127.0.0.1:23790").unwrap(), 23790);
        assert!(port_of("http://127.0.0.1").is_err());
    }
}
