//! A TCP proxy on `127.0.0.1:0` in front of a real server (a `redis-server`, most often) with a
//! switch that stalls it: while stalled, bytes from clients are held (not lost) and forwarded in
//! order once it is released. A test sees what a slow network or a slow Redis does to the
//! server, on real sockets, without a mock.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

pub struct StallProxy {
    pub addr: SocketAddr,
    stalled: Arc<watch::Sender<bool>>,
    /// Every byte held back by a stall so far, over all connections, for [`StallProxy::holding`].
    held: Arc<watch::Sender<Vec<u8>>>,
    _stop: DropGuard,
}

impl StallProxy {
    /// Forwards every connection to `upstream` until dropped.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<StallProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the proxy")?;
        let addr = listener.local_addr()?;
        let (stalled, _) = watch::channel(false);
        let stalled = Arc::new(stalled);
        let held = Arc::new(watch::channel(Vec::new()).0);
        let accept_held = held.clone();
        let stop = CancellationToken::new();
        let accept_stop = stop.clone();
        let accept_stalled = stalled.clone();
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    _ = accept_stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let stop = accept_stop.clone();
                let stalled = accept_stalled.subscribe();
                let held = accept_held.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = pipe(client, server, stalled, held) => {}
                        }
                    }
                });
            }
        });
        Ok(StallProxy {
            addr,
            stalled,
            held,
            _stop: stop.drop_guard(),
        })
    }

    /// `redis://` URL of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Holds every byte clients send from now on, until [`StallProxy::release`].
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn release(&self) {
        self.stalled.send_replace(false);
    }

    /// Waits until a stall holds bytes containing `needle` (say, the name of a Redis command):
    /// then whoever sent them is certainly waiting on this proxy.
    pub async fn holding(&self, needle: &[u8]) {
        let mut held = self.held.subscribe();
        let _ = held
            .wait_for(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .await;
    }
}

/// Client to server through the stall switch; server to client as it comes.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mut stalled: watch::Receiver<bool>,
    held: Arc<watch::Sender<Vec<u8>>>,
) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if *stalled.borrow_and_update() {
                held.send_modify(|h| h.extend_from_slice(&buf[..n]));
            }
            if stalled.wait_for(|s| !*s).await.is_err() {
                break;
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_tx.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
