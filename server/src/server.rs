//! Starting and stopping: [`start`] takes a configuration, a bound listener and a shutdown
//! signal (as mini-redis's `server::run`), so `main`, the tests and the load generator start the
//! server the same way.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use governor::{Quota, RateLimiter};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, RateLimits};
use crate::auth::{self, Keys, SecretSource};
use crate::broker::{Broker, MemoryBroker, RedisBroker, RedisConfig};
use crate::config::{BrokerConfig, Config};
use crate::hub::{self, Hub};
use crate::{metrics, routes, video};

/// Kernel send buffer per client socket (Linux doubles it for its bookkeeping). Enough for
/// a snapshot of a few hundred questions in one go; bursts beyond it wait for the client.
pub const SOCKET_SEND_BUFFER: usize = 64 * 1024;

/// A server that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    pub app: AppState,
    pub secret_source: SecretSource,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Waits until the server has stopped after `shutdown` fired.
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.app.cancel.cancelled().await;
        self.app.relay.shutdown().await;
        self.task.await.context("server task")??;
        self.app.hub.closed().await;
        Ok(())
    }
}

/// Starts serving on `listener` until `shutdown` fires.
pub async fn start(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let config = config.normalized();
    let addr = listener.local_addr()?;
    let public_url: Arc<str> = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .into();
    let (secret, secret_source) = auth::load_secret(config.secret.as_deref(), &config.data_dir)?;
    let broker = connect_broker(&config).await?;
    let limits = &config.limits;
    let rate_limits = RateLimits {
        asks: RateLimiter::keyed(Quota::per_minute(nonzero(limits.asks_per_minute))),
        joins: RateLimiter::keyed(
            Quota::per_second(nonzero(limits.joins_per_second))
                .allow_burst(nonzero(limits.joins_per_second.saturating_mul(5))),
        ),
    };
    let keys = Arc::new(Keys::new(&secret));
    let relay = oncolive_signaling::Relay::new(
        config.relay.clone(),
        Arc::new(video::SessionAuthorizer {
            keys: keys.clone(),
            broker: broker.clone(),
        }),
    )?;
    let video: hub::VideoWatch = {
        let relay = relay.clone();
        Arc::new(move |session| Some(relay.publisher_live(&session.to_string())))
    };
    let hub = Arc::new(Hub::new(
        broker.clone(),
        limits.socket_queue,
        shutdown.clone(),
        video,
    ));
    let app = AppState {
        broker,
        hub,
        relay,
        keys,
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        rate_limits: Arc::new(rate_limits),
        public_url,
        config: Arc::new(config),
        metrics: metrics::handle(),
        cancel: shutdown.clone(),
    };
    // The session gauges hold storage's counts from the first scrape on, even before any.
    metrics::count_sessions(&*app.broker).await;
    spawn_housekeeping(app.clone());
    let router = routes::router(app.clone());
    // Small real-time messages must not wait for Nagle's algorithm. A capped send buffer keeps
    // the kernel from holding megabytes for a client that stopped reading (loopback autotunes
    // to 4 MiB), so such a client is found out, and dropped, after a bounded amount of data.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(SOCKET_SEND_BUFFER);
    });
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    });
    Ok(Running {
        addr,
        app,
        secret_source,
        task,
    })
}

async fn connect_broker(config: &Config) -> anyhow::Result<Arc<dyn Broker>> {
    Ok(match &config.broker {
        BrokerConfig::Memory => Arc::new(MemoryBroker::new(config.history, config.retention)),
        BrokerConfig::Redis {
            url,
            prefix,
            command_timeout,
        } => Arc::new(
            RedisBroker::connect(RedisConfig {
                url: url.clone(),
                prefix: prefix.clone(),
                history: config.history,
                retention: config.retention,
                command_timeout: *command_timeout,
                ..RedisConfig::default()
            })
            .await
            .context("cannot set up the Redis broker")?,
        ),
    })
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Rate limiters forget keys they no longer need, so their memory stays bounded.
fn spawn_housekeeping(app: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = app.cancel.cancelled() => break,
                _ = tick.tick() => {
                    app.rate_limits.asks.retain_recent();
                    app.rate_limits.joins.retain_recent();
                }
            }
        }
    });
}
