//! The connector of `https://` endpoints: TCP, the TLS handshake, a check
//! that the server kept the client certificate, then the stream for HTTP/2.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig};
use tokio_rustls::TlsConnector;

use super::{reason, Failure, Tls};
use crate::error::Result;

/// How long [`probe`] waits for the server's first bytes.
const PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// Dials `https://` endpoints: TCP, then the TLS handshake, then HTTP/2.
#[derive(Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
    tls: Arc<Tls>,
    /// Handshakes completed by this connector and its clones.
    handshakes: Arc<AtomicU64>,
}

impl Connector {
    /// A connector for `tls` (its rustls configuration built once here).
    pub fn new(tls: &Tls) -> Result<Connector> {
        Ok(Connector {
            config: tls.client_config()?,
            tls: Arc::new(tls.clone()),
            handshakes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// TLS handshakes completed so far (one per TCP connection made).
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }
}

type Stream = tokio_rustls::client::TlsStream<TcpStream>;
type Io = TokioIo<Replay<Stream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = Io;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Io, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await })
    }
}

impl Connector {
    async fn connect(self, uri: http::Uri) -> std::result::Result<Io, BoxError> {
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(2379);
        let name = self.tls.server_name(&host)?;
        let addr = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((addr, port)).await?;
        tcp.set_nodelay(true)?;
        // A config of its own for this handshake, to learn whether the
        // server asked for a client certificate.
        let asked = Arc::new(AtomicBool::new(false));
        let mut config = (*self.config).clone();
        config.client_auth_cert_resolver = Arc::new(Watching {
            inner: config.client_auth_cert_resolver.clone(),
            asked: asked.clone(),
        });
        let mut stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| failure(&e, "handshake failed"))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(Box::new(Failure(
                "handshake failed: the server did not offer HTTP/2 (ALPN h2)".into(),
            )));
        }
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        let head = if asked.load(Ordering::Relaxed) {
            probe(&mut stream, self.tls.identity.is_some()).await?
        } else {
            Vec::new()
        };
        Ok(TokioIo::new(Replay {
            head,
            pos: 0,
            inner: stream,
        }))
    }
}

/// The stable failure for an I/O error of the handshake.
fn failure(e: &std::io::Error, otherwise: &str) -> BoxError {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(t) => Box::new(Failure(reason(t))),
        None => Box::new(Failure(format!("{otherwise}: {e}"))),
    }
}

/// In TLS 1.3 the server judges the client's certificate after the client
/// considers the handshake done, and a refusal would surface only later, as
/// a closed HTTP/2 connection ("operation was canceled"). So when the
/// server asked for a certificate, the first bytes it sends (its HTTP/2
/// SETTINGS, or the refusal) are read here and kept for HTTP/2. A server
/// that stays silent is waited for [`PROBE`] at most.
async fn probe(stream: &mut Stream, have_cert: bool) -> std::result::Result<Vec<u8>, BoxError> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    let refused = match have_cert {
        true => "handshake failed: bad certificate (the server refused the client certificate)",
        false => "handshake failed: the server requires a client certificate",
    };
    match tokio::time::timeout(PROBE, stream.read(&mut buf)).await {
        Err(_) => Ok(Vec::new()),
        Ok(Ok(0)) => Err(Box::new(Failure(refused.into()))),
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(buf)
        }
        Ok(Err(e)) => match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => Err(Box::new(Failure(reason(t)))),
            None => Err(Box::new(Failure(refused.into()))),
        },
    }
}

/// Notes whether the server asked for a client certificate.
#[derive(Debug)]
struct Watching {
    inner: Arc<dyn rustls::client::ResolvesClientCert>,
    asked: Arc<AtomicBool>,
}

impl rustls::client::ResolvesClientCert for Watching {
    fn resolve(
        &self,
        hints: &[&[u8]],
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(hints, schemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// A stream that first yields the bytes [`probe`] already read from it.
pub struct Replay<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.head[start..start + n]);
            self.pos += n;
            if self.pos == self.head.len() {
                self.head = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
