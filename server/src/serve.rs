//! The accept loop: what `axum::serve` does, plus the two edge limits it does not expose.
//!
//! - A header read timeout: a connection that has sent nothing, or not a whole request head,
//!   within the timeout is closed (hyper needs a timer for the second, which `axum::serve`
//!   does not give it; the first is ours), so a client that opens connections and never
//!   finishes its headers cannot hold them.
//! - An idle timeout: a connection on which no byte has moved for the timeout is shut down
//!   gracefully (hyper closes it at once when it is between requests, and otherwise lets the
//!   request under way finish first), so idle keep-alive connections cannot hold the slots.
//! - A cap on open connections: past it, new connections wait in the kernel's backlog until
//!   one closes, instead of each taking a task and buffers.
//!
//! Each request carries `ConnectInfo<SocketAddr>` as axum's `into_make_service_with_connect_info`
//! would give it. On shutdown the listener closes and open connections finish their
//! requests (up to [`DRAIN`]).

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// How long open connections get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// The edge limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time a connection has to send a request's head (request line and headers).
    pub header_timeout: Duration,
    /// Time without a byte in or out after which a connection is shut down gracefully.
    pub idle_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connections hold a receiver; shutdown sends on it, then waits for them to drop it.
    let (close_tx, close_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break, // the semaphore is never closed
            },
            _ = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(addr));
                    req.map(axum::body::Body::new)
                });
        let mut close_rx = close_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // hyper's header timeout starts with the first byte: a client that connects and
            // sends nothing gets the same time to begin.
            let mut first = [0u8; 1];
            let began = tokio::time::timeout(limits.header_timeout, stream.peek(&mut first));
            if !matches!(began.await, Ok(Ok(n)) if n > 0) {
                tracing::debug!(%addr, "closed: nothing sent within the header timeout");
                return;
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let activity = Arc::new(Activity::default());
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(Watched {
                    inner: stream,
                    activity: activity.clone(),
                }),
                TowerToHyperService::new(service),
            );
            let mut conn = std::pin::pin!(conn);
            let why = tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, "connection ended: {e}");
                    }
                    return;
                }
                _ = close_rx.changed() => "shutting down",
                _ = activity.idle_for(limits.idle_timeout) => "idle",
            };
            tracing::debug!(%addr, "closing the connection: {why}");
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(close_rx);
    let _ = close_tx.send(());
    let _ = tokio::time::timeout(DRAIN, close_tx.closed()).await;
}

/// When bytes last moved on a connection.
struct Activity {
    epoch: Instant,
    /// Milliseconds from `epoch`.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.epoch.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

/// A stream that notes each read and write in its [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: EdgeLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route(
                "/",
                axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    format!("hello {}", peer.ip())
                }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    "slow but whole"
                }),
            );
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        addr
    }

    /// Reads until the server closes the connection; the bytes read.
    async fn read_to_close(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_to_close(&mut s).await
    }

    /// A connection that never finishes its headers is closed after the timeout; a whole
    /// request is answered, with the client's address.
    #[tokio::test]
    async fn unfinished_headers_are_cut_off() {
        let timeout = Duration::from_millis(300);
        let addr = start(EdgeLimits {
            max_connections: 8,
            header_timeout: timeout,
            idle_timeout: Duration::from_secs(60),
        })
        .await;
        assert!(get(addr).await.contains("hello 127.0.0.1"));
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let t = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut slow))
            .await
            .expect("the server closes the connection");
        assert!(
            t.elapsed() >= timeout / 2,
            "closed too early: {:?}",
            t.elapsed()
        );
        assert!(!answer.contains("hello"), "{answer}");
    }

    /// With every slot held by a client that sends nothing, a new client waits until the
    /// header timeout frees a slot, then is served.
    #[tokio::test]
    async fn connections_past_the_cap_wait_for_a_slot() {
        let timeout = Duration::from_millis(400);
        let addr = start(EdgeLimits {
            max_connections: 2,
            header_timeout: timeout,
            idle_timeout: Duration::from_secs(60),
        })
        .await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), get(addr))
            .await
            .expect("served once a slot frees");
        assert!(answer.contains("hello"), "{answer}");
        assert!(
            t.elapsed() >= timeout / 2,
            "served at once ({:?}): the cap did not hold",
            t.elapsed()
        );
    }

    /// A keep-alive connection left idle after its request is closed after the idle timeout;
    /// a request that computes longer than it, sending nothing meanwhile, still gets its whole
    /// answer.
    #[tokio::test]
    async fn idle_keep_alive_connections_are_closed() {
        let idle = Duration::from_millis(400);
        let addr = start(EdgeLimits {
            max_connections: 8,
            header_timeout: Duration::from_secs(10),
            idle_timeout: idle,
        })
        .await;
        let answer = |path: &'static str, want: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains(want) {
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                    .await
                    .expect("answered")
                    .unwrap();
                assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            s
        };
        // Answered, then idle between requests: closed after the timeout, not before.
        let mut s = answer("/", "hello").await;
        let t = Instant::now();
        let rest = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut s))
            .await
            .expect("the idle connection is closed");
        assert!(rest.is_empty(), "{rest}");
        assert!(
            t.elapsed() >= idle / 2,
            "closed too early: {:?}",
            t.elapsed()
        );
        // Three times the timeout without a byte, mid-request: the answer still comes whole.
        answer("/slow", "slow but whole").await;
    }
}
