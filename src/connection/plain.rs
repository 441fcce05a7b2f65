//! The connector of `http://` endpoints: name lookup, TCP with Nagle off,
//! handed to HTTP/2 as a socket that does not offer vectored writes.
//!
//! Why not vectored: h2 copies a DATA frame's payload into its write
//! buffer only up to a threshold, 256 bytes on a vectored socket and
//! 1 KiB otherwise. A bigger payload is written from where it is, and the
//! buffer is flushed before the next frame is encoded, so a set of a
//! 256-byte value (a payload of about 280 bytes) cost one `writev` per
//! call at any concurrency. Offered as non-vectored, every payload up to
//! 1 KiB is copied and the calls of a batch leave in one write; a payload
//! above 1 KiB leaves in two writes (the buffer, then the payload) rather
//! than one `writev` (BENCHMARKS.md, issue 14, item 14).
//!
//! Failures keep the words of hyper's HTTP connector, which this replaces
//! (`dns error: ...`, `tcp connect error: ...`, the OS error as their
//! source): a `tcp connect error` marks a request that never left, which
//! a write may retry on another member (`call::never_sent`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials `http://` endpoints, each attempt within `timeout` in all.
#[derive(Clone)]
pub struct Connector {
    pub timeout: Duration,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<Unvectored>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let deadline = tokio::time::Instant::now() + self.timeout;
        Box::pin(async move {
            let tcp = dial(&uri, deadline).await?;
            Ok(TokioIo::new(Unvectored(tcp)))
        })
    }
}

/// The first address of `uri`'s host that accepts a connection by
/// `deadline`, tried in the resolver's order.
async fn dial(uri: &http::Uri, deadline: tokio::time::Instant) -> Result<TcpStream, DialError> {
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(2379);
    let lookup = tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)));
    let addrs = match lookup.await {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => return Err(DialError("dns error", e)),
        Err(_) => return Err(DialError("dns error", timed_out())),
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host");
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                tcp.set_nodelay(true)
                    .map_err(|e| DialError("tcp set_nodelay error", e))?;
                return Ok(tcp);
            }
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = timed_out();
                break;
            }
        }
    }
    Err(DialError("tcp connect error", last))
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")
}

/// Why a connection could not be made: what failed, and the OS error.
#[derive(Debug)]
pub struct DialError(&'static str, std::io::Error);

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

impl std::error::Error for DialError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}

/// A TCP stream that reports no vectored writes (see the module doc).
pub struct Unvectored(TcpStream);

impl AsyncRead for Unvectored {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Unvectored {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    // poll_write_vectored and is_write_vectored stay tokio's defaults:
    // one buffer at a time, and `false`.
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    #[tokio::test]
    async fn offers_no_vectored_writes_and_keeps_hypers_failure_words() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = Connector {
            timeout: Duration::from_secs(5),
        };
        let uri: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let io = c.call(uri).await.unwrap();
        assert!(!hyper::rt::Write::is_write_vectored(&io));
        drop(listener);
        let refused: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let err = c.call(refused).await.err().unwrap();
        assert!(err.to_string().starts_with("tcp connect error: "), "{err}");
        let io = err
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
