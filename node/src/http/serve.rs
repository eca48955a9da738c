//! The HTTP listener's accept loop: TLS (when the node has certificates) with the caller's
//! certificate chain put on each request, then HTTP/1.1 or HTTP/2 as the client speaks.

use super::routes::PeerChain;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Longest a client may take over its TLS handshake; a slow one never holds up others.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest open connections get to finish once the node stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a client may take to send a request's headers, and so longest an HTTP/1
/// connection may sit idle between requests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an HTTP/2 connection is pinged, and how long a ping may go unanswered before
/// the connection is closed.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Most connections served at once; further ones wait in the listen backlog, so the HTTP
/// face can never take the file descriptors Raft and storage need.
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves `app` on `listener` until `stop` says so, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        // Finished connections' tasks are reaped as we go.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted.map(|a| (a, slot)),
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let ((tcp, remote), slot) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "the HTTP listener could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (app, acceptor, watcher) = (app.clone(), acceptor.clone(), graceful.watcher());
        connections.spawn(async move {
            // The connection's slot, given back when it ends.
            let _slot = slot;
            match acceptor {
                None => {
                    // A client that connects and sends nothing gives its slot back.
                    if tokio::time::timeout(HEADER_TIMEOUT, tcp.readable())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    connection(tcp, PeerChain::default(), app, watcher).await
                }
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "HTTP TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "HTTP TLS handshake timed out");
                                return;
                            }
                        };
                    let chain = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
                        .unwrap_or_default();
                    connection(tls, PeerChain(Arc::new(chain)), app, watcher).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    // What has not finished by now is cut off, so no connection outlives the node.
    connections.shutdown().await;
}

/// Serves one connection's requests, each with the connection's certificate chain.
async fn connection<IO>(
    io: IO,
    chain: PeerChain,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut request: axum::http::Request<_>| {
        request.extensions_mut().insert(chain.clone());
        request
    });
    let service = TowerToHyperService::new(service);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(served.into_owned()).await {
        tracing::debug!(error = %e, "an HTTP connection ended with an error");
    }
}
