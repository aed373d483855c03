//! The accept loop: what `axum::serve` does, plus the two edge limits it does not expose.
//!
//! - A header read timeout: a connection that has sent nothing, or not a whole request head,
//!   within the timeout is closed (hyper needs a timer for the second, which `axum::serve`
//!   does not give it; the first is ours), so a client that opens connections and never
//!   finishes its headers cannot hold them. (An idle keep-alive connection between requests
//!   is not timed out here.)
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
use std::sync::Arc;
use std::time::Duration;
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
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, "connection ended: {e}");
                    }
                }
                _ = close_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    drop(close_rx);
    let _ = close_tx.send(());
    let _ = tokio::time::timeout(DRAIN, close_tx.closed()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: EdgeLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("hello {}", peer.ip())
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
}
