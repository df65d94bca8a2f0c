//! Accepting HTTP connections, and letting go of those that cost without asking: the accept loop
//! caps the connections of one peer address, and each connection's watchdog closes it when its
//! request headers take too long once started (slowloris) or when it sits idle between requests.
//!
//! `axum::serve` has neither knob, and hyper's own `header_read_timeout` starts when hyper begins
//! to wait for a request, so it cannot tell an idle keep-alive connection from a slow header.
//! Hence this loop: hyper's HTTP/1 connection, with upgrades (WebSockets), on a socket that
//! records its traffic for the watchdog.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::broker::lock;
use crate::client::AddressKey;
use crate::config::Limits;
use crate::metrics as m;

/// Kernel send buffer per client socket (Linux doubles it for its bookkeeping). Enough for
/// a snapshot of a few hundred questions in one go; bursts beyond it wait for the client.
pub const SOCKET_SEND_BUFFER: usize = 64 * 1024;

/// The watchdog's timeouts.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// Serves `router` on `listener` until `shutdown` fires, then waits for every connection to
/// finish its request (WebSockets close on the same signal).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let peers = Arc::new(PeerCounts {
        max: limits.tcp_per_address,
        counts: Mutex::default(),
    });
    let timeouts = Timeouts {
        header: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    let tracker = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most often: give the connections that end a moment
                    // instead of spinning (as axum::serve does).
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(held) = PeerCounts::take(&peers, AddressKey::of(peer.ip())) else {
            // Dropped at once, before a byte is read: a peer over its share costs no more.
            m::connections_closed("per_address").increment(1);
            continue;
        };
        // Small real-time messages must not wait for Nagle's algorithm. A capped send buffer
        // keeps the kernel from holding megabytes for a client that stopped reading (loopback
        // autotunes to 4 MiB), so such a client is found out, and dropped, after a bounded
        // amount of data.
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SOCKET_SEND_BUFFER);
        tracker.spawn(connection(
            tcp,
            peer,
            router.clone(),
            timeouts,
            shutdown.clone(),
            held,
        ));
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
    held: PeerSlot,
) {
    let traffic = Arc::new(Traffic::new());
    let io = TokioIo::new(Watched {
        inner: tcp,
        traffic: traffic.clone(),
        _held: held,
    });
    let service = {
        let traffic = traffic.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            traffic.request_started();
            // A Router is always ready, so `call` needs no `poll_ready` first.
            let response = router.clone().call(req);
            let traffic = traffic.clone();
            async move {
                let response = response.await;
                traffic.request_done();
                response
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let check_at = traffic.deadline(timeouts);
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                // Finishes the request in progress, then closes; an idle connection closes now.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            // The deadline moved earlier (a request ended, or new headers started): look again.
            _ = traffic.changed.notified() => {}
            _ = tokio::time::sleep_until(check_at) => {
                if let Some(reason) = traffic.expired(timeouts) {
                    tracing::debug!(%peer, reason, "closing the connection");
                    m::connections_closed(reason).increment(1);
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

/// What the watchdog knows of one connection, written by its socket and its service. Times are
/// milliseconds since `epoch`; atomics because the socket and the service run in hyper's poll
/// while the watchdog reads them between polls.
struct Traffic {
    epoch: Instant,
    /// The last time a byte went either way, or a response was ready.
    last_io: AtomicU64,
    /// 1 + when the client started on its next request's headers (the first byte that arrived
    /// while no request was in flight, or the accept for the first request); 0: not started.
    head_since: AtomicU64,
    /// Requests handed to the router whose response is not ready yet.
    in_flight: AtomicU32,
    /// Wakes the watchdog when the deadline may have moved earlier than the one it sleeps to.
    changed: Notify,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            epoch: Instant::now(),
            last_io: AtomicU64::new(0),
            // A fresh connection owes its first request's headers at once: one that opens and
            // says nothing is a slow client too.
            head_since: AtomicU64::new(1),
            in_flight: AtomicU32::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
    }

    fn request_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.wrote();
        self.changed.notify_one();
    }

    /// When the connection's limit runs out, as far as is known now. A request in flight is
    /// the router's to time (and a WebSocket's to keep): looked at again an idle period later.
    fn limit(&self, timeouts: Timeouts) -> (u64, &'static str) {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return (self.now() + ms(timeouts.idle), "");
        }
        match self.head_since.load(Ordering::Relaxed) {
            0 => (
                self.last_io.load(Ordering::Relaxed) + ms(timeouts.idle),
                "idle",
            ),
            since => (since - 1 + ms(timeouts.header), "slow_headers"),
        }
    }

    fn deadline(&self, timeouts: Timeouts) -> Instant {
        let (at, _) = self.limit(timeouts);
        self.epoch + Duration::from_millis(at)
    }

    /// Why the connection must close now, if it must.
    fn expired(&self, timeouts: Timeouts) -> Option<&'static str> {
        let (at, reason) = self.limit(timeouts);
        (!reason.is_empty() && self.now() >= at).then_some(reason)
    }
}

/// A TCP stream that tells its [`Traffic`] whenever bytes move.
struct Watched {
    inner: TcpStream,
    traffic: Arc<Traffic>,
    /// The peer's count holds as long as the socket, a WebSocket's after the upgrade included.
    _held: PeerSlot,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.traffic.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open TCP connections per peer address (IPv6 by /64).
struct PeerCounts {
    max: usize,
    /// A std mutex held for one map operation per accept and per close; entries at zero are
    /// removed, so the map is as large as the peers connected.
    counts: Mutex<HashMap<AddressKey, usize>>,
}

/// One connection's place in its peer's count, given back on drop.
struct PeerSlot {
    peers: Arc<PeerCounts>,
    peer: AddressKey,
}

impl PeerCounts {
    fn take(peers: &Arc<PeerCounts>, peer: AddressKey) -> Option<PeerSlot> {
        let mut counts = lock(&peers.counts);
        let open = counts.entry(peer).or_default();
        if *open >= peers.max {
            return None;
        }
        *open += 1;
        Some(PeerSlot {
            peers: peers.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.peers.counts);
        if let Some(open) = counts.get_mut(&self.peer) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}
