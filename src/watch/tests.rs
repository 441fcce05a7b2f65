//! Failover of the Watch stream, against in-process HTTP/2 peers that play
//! etcd members gone wrong in ways only the client can notice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::net::TcpListener;

use super::Spec;
use crate::connection::{Config, Connection};
use crate::metadata::Metadata;
use crate::pb::etcdserverpb::{
    ResponseHeader as PbResponseHeader, WatchCreateRequest as PbWatchCreateRequest,
    WatchResponse as PbWatchResponse,
};

/// A fake member on a free loopback port.
struct Member {
    url: String,
    /// Watch streams it was asked for.
    streams: Arc<AtomicUsize>,
    /// Its answered streams, still open.
    open: Arc<Mutex<Vec<h2::SendStream<Bytes>>>>,
}

impl Member {
    /// Starts one. An answering member answers each create and keeps the
    /// stream open; a silent one never answers a stream, though its
    /// connection answers pings: an etcd alive at the HTTP/2 level and
    /// stuck above it.
    async fn start(answers: bool) -> Member {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let m = Member {
            url: format!("http://{}", listener.local_addr().unwrap()),
            streams: Arc::default(),
            open: Arc::default(),
        };
        let (streams, open) = (m.streams.clone(), m.open.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, answers, streams.clone(), open.clone()));
            }
        });
        m
    }

    /// Resets its open streams with an HTTP/2 error (no gRPC status); the
    /// connection stays up.
    fn reset(&self) {
        for mut s in self.open.lock().unwrap().drain(..) {
            s.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }

    fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// Waits up to 5 s until it was asked for `n` streams.
    async fn until(&self, n: usize) -> bool {
        for _ in 0..100 {
            if self.streams() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

async fn serve(
    sock: tokio::net::TcpStream,
    answers: bool,
    streams: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<h2::SendStream<Bytes>>>>,
) {
    let Ok(mut conn) = h2::server::handshake(sock).await else {
        return;
    };
    // unanswered streams stay open while their handles are held; accept()
    // also drives the connection, so pings are answered
    let mut unanswered = Vec::new();
    while let Some(Ok((_req, mut respond))) = conn.accept().await {
        streams.fetch_add(1, Ordering::SeqCst);
        if !answers {
            unanswered.push(respond);
            continue;
        }
        let headers = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut body = respond.send_response(headers, false).unwrap();
        body.send_data(created(), false).unwrap();
        open.lock().unwrap().push(body);
    }
}

/// etcd's `created` answer in gRPC framing.
fn created() -> Bytes {
    let msg = PbWatchResponse {
        header: Some(PbResponseHeader {
            revision: 1,
            ..Default::default()
        }),
        created: true,
        ..Default::default()
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame.into()
}

/// Watches a key through a connection to `endpoints` (the first tried
/// first) and returns once the watcher got its `created` answer.
async fn watching(endpoints: Vec<String>) -> (Arc<Connection>, super::Watcher) {
    let conn = Arc::new(Connection::new(Config::new(endpoints)).unwrap());
    let streams = crate::registry::Streams::default();
    let watcher = streams.watch_hub(&conn, &Metadata::default()).watch(Spec {
        create: PbWatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        },
        buffer: 16,
        member: 0,
    });
    let first = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
    assert!(matches!(first, Ok(Ok(_))), "no created answer");
    (conn, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_by_the_transport_moves_to_the_next_endpoint() {
    let (first, second) = (Member::start(true).await, Member::start(true).await);
    let (_conn, _watcher) = watching(vec![first.url.clone(), second.url.clone()]).await;
    first.reset();
    // the connection to the first member is still up: only the failure
    // report sends the new stream elsewhere
    assert!(second.until(1).await, "the stream did not move");
    assert_eq!(first.streams(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_opens_moves_to_the_next_endpoint() {
    let (silent, second) = (Member::start(false).await, Member::start(true).await);
    let (_conn, _watcher) = watching(vec![silent.url.clone(), second.url.clone()]).await;
    assert_eq!((silent.streams(), second.streams()), (1, 1));
}

/// A watcher on this key makes the hub's task panic (test builds only).
pub(super) const PANIC_KEY: &[u8] = b"\0panic";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_hub_ends_its_watchers_with_a_clear_error() {
    let member = Member::start(true).await;
    let (conn, watcher) = watching(vec![member.url.clone()]).await;
    let streams = crate::registry::Streams::default();
    let hub = streams.watch_hub(&conn, &Metadata::default());
    let spec = |key: &[u8]| Spec {
        create: PbWatchCreateRequest {
            key: key.to_vec(),
            ..Default::default()
        },
        buffer: 16,
        member: 0,
    };
    let victim = hub.watch(spec(b"k"));
    let first = tokio::time::timeout(Duration::from_secs(10), victim.next()).await;
    assert!(matches!(first, Ok(Ok(_))), "no created answer");
    let _bomb = hub.watch(spec(PANIC_KEY));
    let read = tokio::time::timeout(Duration::from_secs(10), victim.next()).await;
    let err = match read {
        Ok(Err(e)) => e.to_string(),
        other => panic!("the watcher did not end: {other:?}"),
    };
    assert!(
        err.starts_with("watch stream failed: internal error: deliberate panic"),
        "{err}"
    );
    assert_eq!(hub.counters().panics.load(Ordering::Relaxed), 1);
    // the hub serves on: a new watcher gets its created answer
    let after = hub.watch(spec(b"k2"));
    let ok = tokio::time::timeout(Duration::from_secs(10), after.next()).await;
    assert!(matches!(ok, Ok(Ok(_))), "the hub is dead after the panic");
    drop(watcher);
}
