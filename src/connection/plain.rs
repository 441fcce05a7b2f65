//! The connector of `http://` endpoints: hyper's, its TCP stream handed
//! to HTTP/2 as a socket that does not offer vectored writes.
//!
//! Why not vectored: h2 copies a DATA frame's payload into its write
//! buffer only up to a threshold, 256 bytes on a vectored socket and
//! 1 KiB otherwise. A bigger payload is written from where it is, and the
//! buffer is flushed before the next frame is encoded, so a set of a
//! 256-byte value (a payload of about 280 bytes) cost one `writev` per
//! call at any concurrency. Offered as non-vectored, every payload under
//! 1 KiB is copied and the calls of a batch leave in one write; each DATA
//! frame of 1 KiB or more leaves in two writes (the buffer, then the
//! payload) rather than one `writev` (BENCHMARKS.md, issue 14, item 14).
//!
//! The dialling itself is hyper's HTTP connector, as tonic's own would be
//! (happy eyeballs, the connect timeout, its failure words, which
//! `call::never_sent` and the error strings rely on); only the stream it
//! yields is wrapped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials `http://` endpoints.
#[derive(Clone)]
pub struct Connector(HttpConnector);

impl Connector {
    /// A connector whose every connection is made within `timeout`.
    pub fn new(timeout: Duration) -> Connector {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        Connector(http)
    }
}

impl Service<http::Uri> for Connector {
    type Response = TokioIo<Unvectored>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            Ok(TokioIo::new(Unvectored(tcp)))
        })
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

    #[tokio::test]
    async fn offers_no_vectored_writes_and_keeps_hypers_failure_words() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = Connector::new(Duration::from_secs(5));
        let uri: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let io = c.call(uri).await.unwrap();
        assert!(!hyper::rt::Write::is_write_vectored(&io));
        // A port bound but not listening refuses every connection.
        let reserved = tokio::net::TcpSocket::new_v4().unwrap();
        reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = reserved.local_addr().unwrap().port();
        let refused: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let err = c.call(refused).await.err().unwrap();
        assert!(err.to_string().contains("tcp connect error"), "{err}");
        let mut source = err.source();
        let mut kind = None;
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind());
            }
            source = e.source();
        }
        assert_eq!(kind, Some(std::io::ErrorKind::ConnectionRefused));
    }
}
