//! The HTTP/1.1 accept loop of the public listeners (edge, api): bounded
//! request heads, a deadline to send them, a cap on open connections, and a
//! graceful drain on shutdown.
//!
//! These are the slowloris defences (security review finding 17): a client
//! that opens connections and sends its head a byte at a time is cut at
//! [`HttpLimits::header_timeout`] (hyper answers `408` and closes), and once
//! [`HttpLimits::max_connections`] are open, new ones are closed at accept
//! (counted by the caller's `refused` counter) instead of exhausting file
//! descriptors and memory for everyone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Limits of a public HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Bound on the request head, bytes (at least 8192, hyper's minimum).
    pub max_header_bytes: usize,
    /// Time allowed to send a request head, from the first byte of a request
    /// (and of an idle keep-alive connection's next one).
    pub header_timeout: Duration,
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
        .header_read_timeout(limits.header_timeout)
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
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), make(peer)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let limits =
            HttpLimits { max_header_bytes: 8192, header_timeout: Duration::from_millis(300), max_connections: 0 };
        let (addr, _, stop) = server(limits).await;
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
        assert!(closed_within(&mut s, Duration::from_secs(2)).await, "a slow head holds the connection open");
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_counted() {
        let limits = HttpLimits { max_header_bytes: 8192, header_timeout: Duration::from_secs(30), max_connections: 2 };
        let (addr, refused, stop) = server(limits).await;
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
