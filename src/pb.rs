//! Generated protobuf and gRPC client code for `proto/` (see `build.rs`).
//!
//! Elsewhere these types are imported with a `Pb` prefix so it is always
//! clear which values are wire types.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// etcd's `mvccpb` package: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `etcdserverpb` package: requests, responses and service clients.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
