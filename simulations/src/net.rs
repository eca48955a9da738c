//! The real node and client over turmoil's network: a dial that opens turmoil TCP streams,
//! and an accept loop that hands turmoil connections to the tonic server.

use futures_util::stream::{self, Stream};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Endpoint;
use turmoil::net::{TcpListener, TcpStream};

/// Dials `host:port` on the simulated network (a lazy channel; connects on first use).
pub fn dial() -> rota_client::Dial {
    Arc::new(|addr: &str| {
        let target = addr.to_owned();
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1));
        Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                let target = target.clone();
                async move {
                    let stream = TcpStream::connect(target).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            })),
        )
    })
}

/// Connections accepted by `listener`, as tonic wants them.
pub fn incoming(
    listener: TcpListener,
) -> impl Stream<Item = Result<Accepted, std::io::Error>> + Send + 'static {
    stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(s, _)| Accepted(s));
        Some((next, listener))
    })
}

/// One accepted simulated connection.
pub struct Accepted(TcpStream);

impl Connected for Accepted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        TcpConnectInfo {
            local_addr: self.0.local_addr().ok(),
            remote_addr: self.0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
