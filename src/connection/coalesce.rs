//! Every connection's stream gathers HTTP/2's writes and sends them at
//! its flush, whatever the connector (plain or TLS).
//!
//! Why: h2 copies a DATA frame's payload into its write buffer only up to
//! a threshold, 256 bytes on a vectored stream and 1 KiB otherwise; a
//! bigger payload is written from where it is, after the buffer, and the
//! buffer is flushed before the next frame is encoded. On a vectored
//! stream a set of a 256-byte value (a payload of about 280 bytes) cost
//! one `writev` per call at any concurrency. So the stream is offered as
//! non-vectored (every payload under 1 KiB is copied: a batch of calls
//! is one write, one TLS record on TLS), and it holds what h2 writes
//! until h2 flushes, so that a frame of 1 KiB or more leaves in one write
//! with the buffer before it rather than in two (BENCHMARKS.md, issue 14,
//! items 14 and 15).
//!
//! A flush with bytes held is deferred once: it wakes its own task and
//! answers `Pending`, and the next flush writes. h2 flushes at the end of
//! every round of its connection task, but a request's body comes from
//! another task (hyper's body pipe), so a round often holds a call's
//! HEADERS while its DATA is one scheduler turn away; a call alone then
//! cost two writes (two TLS records: measured with strace, BENCHMARKS.md
//! item 15). One turn lets the tasks already woken add their frames
//! first (not those spawned in the same round: the driver queues them
//! behind the connection). It costs no sleep and no timer: the task woke
//! itself, so it runs again once the tasks ready before it have, and h2
//! flushes on every poll of its connection (`poll_complete` when its
//! read side is pending, `shutdown` when it closes), so the held bytes
//! leave at that poll whatever it wrote meanwhile. A deferral needs
//! bytes written since the last drain, so it cannot spin. Its price: h2
//! also flushes when a chained DATA payload (1 KiB or more) fills its
//! encoder, so a burst of big frames takes one more connection poll per
//! two frames; counted, that burst still costs fewer writes and less
//! CPU than without the hold (item 15).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most bytes a stream holds before it writes: room for h2's buffer
/// and a full DATA frame (16 KiB) after it. A write this big or bigger
/// is not copied.
const HOLD: usize = 64 * 1024;

/// A connector whose streams gather writes until they are flushed.
#[derive(Clone)]
pub struct Coalesced<C>(pub C);

impl<C> Service<http::Uri> for Coalesced<C>
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
        Box::pin(async move { connecting.await.map(Stream::new).map_err(Into::into) })
    }
}

/// A connection's stream: no vectored writes, and writes held until
/// flushed (see the module doc).
pub struct Stream<S> {
    io: S,
    /// Bytes accepted from h2 and not yet written; `sent` of them are.
    held: Vec<u8>,
    sent: usize,
    /// Whether this flush has already let one turn pass (module doc).
    deferred: bool,
}

impl<S> Stream<S> {
    fn new(io: S) -> Self {
        Stream {
            io,
            held: Vec::new(),
            sent: 0,
            deferred: false,
        }
    }
}

impl<S: Write + Unpin> Stream<S> {
    /// Writes everything held; `Pending` while the socket takes no more.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: Read + Unpin> Read for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: Write + Unpin> Write for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let big = data.len() >= HOLD;
        if big || this.held.len() + data.len() > HOLD {
            ready!(this.poll_drain(cx))?;
            if big {
                return Pin::new(&mut this.io).poll_write(cx, data);
            }
        }
        this.held.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.deferred && self.sent < self.held.len() {
            self.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_drain(cx))?;
        self.deferred = false;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
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
        let mut c = Coalesced(HttpConnector::new());
        let uri: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let io = c.call(uri).await.unwrap();
        assert!(io.io.is_write_vectored(), "a TCP stream itself is vectored");
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

    /// A socket that records each write; it takes at most `chunk` bytes
    /// a call and, when `stall` is set, answers every other call with
    /// `Pending` (waking at once), like a full socket buffer.
    #[derive(Default)]
    struct Socket {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        chunk: Option<usize>,
        stall: bool,
        stalled: bool,
        broken: bool,
        shut: bool,
    }

    impl Write for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.broken {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if self.stall && !self.stalled {
                self.stalled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.stalled = false;
            let n = data.len().min(self.chunk.unwrap_or(usize::MAX));
            self.writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// A stall fails the test instead of hanging it.
    async fn bounded<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(5), f)
            .await
            .expect("stalled")
    }

    async fn write(s: &mut Stream<Socket>, data: &[u8]) -> io::Result<usize> {
        bounded(std::future::poll_fn(|cx| {
            Pin::new(&mut *s).poll_write(cx, data)
        }))
        .await
    }

    async fn flush(s: &mut Stream<Socket>) -> io::Result<()> {
        bounded(std::future::poll_fn(|cx| Pin::new(&mut *s).poll_flush(cx))).await
    }

    #[tokio::test]
    async fn a_shutdown_sends_what_is_held_first() {
        // h2's last frame (a GOAWAY) is written, then the stream shut down.
        let mut s = Stream::new(Socket::default());
        write(&mut s, b"GOAWAY").await.unwrap();
        bounded(std::future::poll_fn(|cx| {
            Pin::new(&mut s).poll_shutdown(cx)
        }))
        .await
        .unwrap();
        assert_eq!(s.io.writes, vec![b"GOAWAY".to_vec()]);
        assert!(s.io.shut);
    }

    #[tokio::test]
    async fn writes_are_held_until_the_flush_and_leave_in_one() {
        let mut s = Stream::new(Socket::default());
        // What h2 writes for a DATA frame of 4 KiB on a stream that is not
        // vectored: its buffer (frame headers), then the payload; then the
        // next round's buffer.
        for part in [&[1u8; 200][..], &[2; 4096], &[3; 100]] {
            assert_eq!(write(&mut s, part).await.unwrap(), part.len());
        }
        assert!(
            s.io.writes.is_empty(),
            "nothing is written before the flush"
        );
        flush(&mut s).await.unwrap();
        assert_eq!(s.io.writes.len(), 1);
        let sent = &s.io.writes[0];
        assert_eq!(sent.len(), 4396);
        assert!(sent[..200].iter().all(|&b| b == 1) && sent[4296..].iter().all(|&b| b == 3));
        assert_eq!(s.io.flushes, 1);
        flush(&mut s).await.unwrap();
        assert_eq!(s.io.writes.len(), 1, "an empty flush writes nothing");
    }

    #[tokio::test]
    async fn a_flush_lets_one_turn_pass_and_what_came_meanwhile_leaves_with_it() {
        let mut s = Stream::new(Socket::default());
        let woken = std::sync::Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut poll_flush = |s: &mut Stream<Socket>| Pin::new(s).poll_flush(&mut cx);
        assert!(
            poll_flush(&mut s).is_ready(),
            "nothing held: no turn to wait"
        );
        assert_eq!(woken.count(), 0);
        write(&mut s, b"HEADERS").await.unwrap();
        assert!(poll_flush(&mut s).is_pending());
        assert_eq!(woken.count(), 1, "it woke itself");
        assert!(s.io.writes.is_empty() && s.io.flushes == 1);
        // Another task's frame, added in the turn that passed.
        write(&mut s, b"DATA").await.unwrap();
        assert!(poll_flush(&mut s).is_ready());
        assert_eq!(s.io.writes, vec![b"HEADERSDATA".to_vec()]);
        assert_eq!(woken.count(), 1);
        // The next round waits its own turn again.
        write(&mut s, b"PING").await.unwrap();
        assert!(poll_flush(&mut s).is_pending());
        assert!(poll_flush(&mut s).is_ready());
        assert_eq!(s.io.writes.len(), 2);
        assert_eq!(woken.count(), 2);
    }

    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicUsize);

    impl Woken {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_write_past_the_hold_sends_what_is_held_first_and_big_ones_go_straight() {
        let mut s = Stream::new(Socket::default());
        write(&mut s, &[1; 10 * 1024]).await.unwrap();
        write(&mut s, &[2; 60 * 1024]).await.unwrap();
        assert_eq!(s.io.writes.len(), 1, "the 10 KiB went before the 60 KiB");
        assert_eq!(s.io.writes[0], vec![1; 10 * 1024]);
        assert_eq!(write(&mut s, &[3; HOLD]).await.unwrap(), HOLD);
        assert_eq!(s.io.writes.len(), 3);
        assert_eq!(s.io.writes[1], vec![2; 60 * 1024]);
        assert_eq!(
            s.io.writes[2],
            vec![3; HOLD],
            "written as it came, not held"
        );
        flush(&mut s).await.unwrap();
        assert_eq!(s.io.writes.len(), 3);
        // Nothing held: a write of HOLD bytes is not copied either.
        assert_eq!(write(&mut s, &[4; HOLD]).await.unwrap(), HOLD);
        assert_eq!(s.io.writes.len(), 4, "written at once");
        assert!(s.held.is_empty());
    }

    #[tokio::test]
    async fn a_full_socket_gets_every_byte_in_order() {
        let mut s = Stream::new(Socket {
            chunk: Some(1000),
            stall: true,
            ..Socket::default()
        });
        let mut want = Vec::new();
        for i in 0..40u32 {
            let part = vec![i as u8; 3000 + i as usize * 97];
            assert_eq!(write(&mut s, &part).await.unwrap(), part.len());
            want.extend_from_slice(&part);
        }
        flush(&mut s).await.unwrap();
        assert_eq!(s.io.writes.concat(), want);
        assert!(s.held.is_empty() && s.sent == 0);
    }

    #[tokio::test]
    async fn a_broken_socket_fails_the_flush() {
        let mut s = Stream::new(Socket {
            broken: true,
            ..Socket::default()
        });
        write(&mut s, b"held").await.unwrap();
        let err = flush(&mut s).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(s.io.flushes, 0);
    }
}
