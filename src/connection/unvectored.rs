//! Every connection's stream is handed to HTTP/2 as one that offers no
//! vectored writes, whatever the connector (plain or TLS).
//!
//! Why: h2 copies a DATA frame's payload into its write buffer only up to
//! a threshold, 256 bytes on a vectored stream and 1 KiB otherwise. A
//! bigger payload is written from where it is, and the buffer is flushed
//! before the next frame is encoded, so a set of a 256-byte value (a
//! payload of about 280 bytes) cost one `writev` per call at any
//! concurrency. Offered as non-vectored, every payload under 1 KiB is
//! copied and the calls of a batch leave in one write (one TLS record on
//! TLS); each DATA frame of 1 KiB or more leaves in two writes (the
//! buffer, then the payload) rather than one `writev` (BENCHMARKS.md,
//! issue 14, item 14).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector whose streams offer no vectored writes.
#[derive(Clone)]
pub struct Unvectored<C>(pub C);

impl<C> Service<http::Uri> for Unvectored<C>
where
    C: Service<http::Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = Stream<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(Stream).map_err(Into::into) })
    }
}

/// A connection's stream, its vectored writes hidden (see the module doc).
pub struct Stream<S>(S);

impl<S: Read + Unpin> Read for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: Write + Unpin> Write for Stream<S> {
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

    // poll_write_vectored and is_write_vectored stay hyper's defaults:
    // one buffer at a time, and `false`.
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::connect::HttpConnector;

    #[tokio::test]
    async fn streams_offer_no_vectored_writes_and_failures_keep_their_words() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = Unvectored(HttpConnector::new());
        let uri: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let io = c.call(uri).await.unwrap();
        assert!(io.0.is_write_vectored(), "a TCP stream itself is vectored");
        assert!(!io.is_write_vectored());
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
