//! The HTTP/1.1 accept loop of the public listeners (edge, api): bounded
//! request heads, a deadline to send them, a cap on open connections, and a
//! graceful drain on shutdown.
//!
//! These are the slowloris defences (security review finding 17): a client
//! that sends its head a byte at a time is cut [`HttpLimits::header_timeout`]
//! after the head's first byte (answered `408` and closed), a connection
//! that sends nothing at all is closed after [`HttpLimits::idle_timeout`],
//! and once [`HttpLimits::max_connections`] are open, new ones are closed
//! at accept (counted by the caller's `refused` counter) instead of
//! exhausting file descriptors and memory for everyone.
//!
//! The two timeouts are apart, as nginx keeps `client_header_timeout` and
//! `keepalive_timeout` apart: hyper's own head timer starts as soon as a
//! connection waits for a request, idle or not, so with it alone an idle
//! keep-alive connection (a visitor's browser, a load balancer's pool)
//! would be closed after the few seconds a head may take. hyper's timer is
//! therefore set to the idle timeout, and `HeadDeadline` times the head
//! itself from its first byte.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Limits of a public HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Bound on the request head, bytes (at least 8192, hyper's minimum).
    pub max_header_bytes: usize,
    /// Time allowed to send a request head, from its first byte (of a new
    /// connection's first request, or of a keep-alive connection's next).
    pub header_timeout: Duration,
    /// Time a connection may wait for a request without sending a byte of
    /// it (a new connection, or a keep-alive one between requests).
    pub idle_timeout: Duration,
    /// Connections open at once; one more is closed at accept. 0: no cap.
    pub max_connections: usize,
}

/// Accepts connections on `listener` until `shutdown`, serving each with
/// the service `make(peer)` builds, then waits up to `grace` for open
/// connections to finish their current request. `refused` counts the
/// connections closed at accept because [`HttpLimits::max_connections`] were
/// open.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    make: M,
    limits: HttpLimits,
    shutdown: CancellationToken,
    grace: Duration,
    refused: prometheus::IntCounter,
) where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Bounds idle waits; HeadDeadline bounds the heads themselves.
        .header_read_timeout(limits.idle_timeout.max(limits.header_timeout))
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let slots = (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let permit = match &slots {
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    refused.inc();
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let calls = Arc::new(AtomicU64::new(0));
        let io = HeadDeadline::new(stream, limits.header_timeout, calls.clone());
        let service = Counted { inner: make(peer), calls };
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// A service that counts the requests it is called with: a call means
/// hyper has read a whole request head, which is what [`HeadDeadline`]
/// waits for.
struct Counted<S> {
    inner: S,
    calls: Arc<AtomicU64>,
}

impl<S: Service<Request<Incoming>>> Service<Request<Incoming>> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// Where a connection is between requests, for [`HeadDeadline`].
enum Phase {
    /// Waiting for a request: no byte of its head yet.
    Idle,
    /// A head has started at `started`; complete once the service has
    /// been called more than `calls` times.
    Head { started: tokio::time::Instant, calls: u64 },
    /// The head is in; the request's body and answer are under way.
    Request,
}

/// `408 Request Timeout`, sent (best effort) before a connection whose head
/// took too long is closed.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// A connection's stream that fails reads once a request head has taken
/// longer than `timeout` from its first byte (after sending a `408`), and
/// otherwise passes everything through. The head is complete when the
/// service is called ([`Counted`]); the answer's first write makes the
/// connection idle again. A head that arrives in one read (nearly all)
/// never touches a timer: the deadline's `Sleep` is set only when a read
/// has to wait in the middle of a head.
struct HeadDeadline {
    io: TcpStream,
    timeout: Duration,
    calls: Arc<AtomicU64>,
    phase: Phase,
    /// Armed only while a started head waits for more bytes.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HeadDeadline {
    fn new(io: TcpStream, timeout: Duration, calls: Arc<AtomicU64>) -> Self {
        Self { io, timeout, calls, phase: Phase::Idle, sleep: None }
    }

    /// Moves a head whose request reached the service on to `Request`.
    fn observe_calls(&mut self) {
        if let Phase::Head { calls, .. } = self.phase {
            if self.calls.load(Ordering::Relaxed) != calls {
                self.phase = Phase::Request;
            }
        }
    }

    /// An answer is being written: a request under way is done, and the
    /// connection waits for the next one (idle, no head deadline).
    fn answering(&mut self) {
        self.observe_calls();
        if matches!(self.phase, Phase::Request) {
            self.phase = Phase::Idle;
        }
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.observe_calls();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && matches!(this.phase, Phase::Idle) {
                    let calls = this.calls.load(Ordering::Relaxed);
                    this.phase = Phase::Head { started: tokio::time::Instant::now(), calls };
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Phase::Head { started, .. } = this.phase else { return Poll::Pending };
                let deadline = started + this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Best effort: the answer fits the socket's buffer or is dropped.
                let _ = Pin::new(&mut this.io).poll_write(cx, REQUEST_TIMEOUT);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")))
            }
            other => other,
        }
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.answering();
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.answering();
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// 8 KiB heads, the given timeouts (ms) and connection cap.
    fn limits(header_ms: u64, idle_ms: u64, max_connections: usize) -> HttpLimits {
        HttpLimits {
            max_header_bytes: 8192,
            header_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections,
        }
    }

    async fn server(limits: HttpLimits) -> (SocketAddr, prometheus::IntCounter, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = prometheus::IntCounter::new("refused", "refused").unwrap();
        let stop = CancellationToken::new();
        let make = |_peer| {
            hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            })
        };
        tokio::spawn(serve(listener, make, limits, stop.clone(), Duration::from_millis(100), refused.clone()));
        (addr, refused, stop)
    }

    /// Reads until the peer closes or `within` passes; whether it closed.
    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 512];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test]
    async fn a_head_sent_byte_by_byte_is_cut_at_the_deadline() {
        let (addr, _, stop) = server(limits(300, 30000, 0)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        // Keeps dribbling a header well past the deadline.
        let dribble = async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if s.write_all(b"X").await.is_err() {
                    return;
                }
            }
        };
        dribble.await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut answer)).await;
        assert!(answer.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&answer));
        assert!(closed_within(&mut s, Duration::from_secs(2)).await, "a slow head holds the connection open");
        stop.cancel();
    }

    /// One request on `s`; whether it was answered 200.
    async fn get(s: &mut tokio::net::TcpStream) -> bool {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.expect("answer");
        buf[..n].starts_with(b"HTTP/1.1 200")
    }

    /// An idle keep-alive connection is kept past the head timeout (up to
    /// the idle timeout), then serves its next request; a head that starts
    /// on it still has only the head timeout; one that never starts is
    /// closed at the idle timeout.
    #[tokio::test]
    async fn idle_keep_alive_connections_outlive_the_head_timeout() {
        let (addr, _, stop) = server(limits(200, 1500, 0)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        assert!(get(&mut s).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(get(&mut s).await, "idle 700 ms (head timeout 200 ms): still served");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(get(&mut s).await, "and again: each request starts the idle time over");
        // A head started on the idle connection is cut at the head timeout.
        s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut answer)).await;
        assert!(answer.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&answer));
        // A connection that never sends a byte is closed at the idle timeout.
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        assert!(!closed_within(&mut silent, Duration::from_millis(1000)).await, "closed before the idle timeout");
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await, "kept past the idle timeout");
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_counted() {
        let (addr, refused, stop) = server(limits(30000, 30000, 2)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.expect("answer");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
            held.push(s);
        }
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(closed_within(&mut third, Duration::from_secs(2)).await, "the third connection is closed");
        assert_eq!(refused.get(), 1);
        drop(held);
        // Slots free again once the held connections close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = tokio::net::TcpStream::connect(addr).await.expect("connect");
        again.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 256];
        let n = again.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        stop.cancel();
    }
}
