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
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, RateLimits};
use crate::auth::{self, Keys, SecretSource};
use crate::broker::{Broker, MemoryBroker, RedisBroker, RedisConfig};
use crate::config::{BrokerConfig, Config, RelayConfig};
use crate::hub::{self, Hub};
use crate::sockets::SocketSlots;
use crate::{accept, metrics, routes, video};

pub use crate::accept::SOCKET_SEND_BUFFER;

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
        asks_by_address: RateLimiter::keyed(Quota::per_minute(nonzero(
            limits.asks_per_minute_per_address,
        ))),
        asks_by_session: RateLimiter::keyed(
            Quota::per_second(nonzero(limits.asks_per_second_per_session)).allow_burst(nonzero(
                limits.asks_per_second_per_session.saturating_mul(5),
            )),
        ),
    };
    let media = oncolive_media::MediaStore::open_with_settings(
        config.media.object_store.as_deref(),
        &config.data_dir.join("media"),
    )
    .context("cannot open the media store (--object-store)")?;
    let keys = Arc::new(Keys::new(&secret));
    // Where the other nodes pull this node's broadcasts from: `--node-url`, else the bound
    // address when it is a specific one (0.0.0.0 names no reachable address).
    let node_url: Option<Arc<str>> = config
        .node_url
        .clone()
        .or_else(|| (!addr.ip().is_unspecified()).then(|| format!("http://{addr}")))
        .map(Into::into);
    let authorizer = Arc::new(video::SessionAuthorizer {
        keys: keys.clone(),
        broker: broker.clone(),
        node_url,
    });
    let relay = oncolive_signaling::Relay::new(
        // One flag says whether a proxy's X-Forwarded-For is believed, for joins and viewers alike.
        RelayConfig {
            trust_forwarded_for: config.limits.trust_forwarded_for,
            recording: Some(oncolive_signaling::RecordingConfig {
                store: media.clone(),
                target_segment: config.media.target_segment,
            }),
            ..config.relay.clone()
        },
        authorizer.clone(),
    )?;
    // Every node whose pump forwards a session's end ends its own video of it.
    let ended: hub::SessionEnded = {
        let relay = relay.clone();
        Arc::new(move |session| {
            let relay = relay.clone();
            tokio::spawn(async move { relay.end_local(&session.to_string()).await });
        })
    };
    let hub = Arc::new(Hub::new(
        broker.clone(),
        limits.socket_queue,
        shutdown.clone(),
        ended,
    ));
    tokio::spawn(crate::video_presence::run(
        relay.clone(),
        broker.clone(),
        hub.clone(),
        authorizer,
        shutdown.clone(),
    ));
    let app = AppState {
        broker,
        hub,
        relay,
        media,
        keys,
        connections: Arc::new(SocketSlots::new(limits)),
        rate_limits: Arc::new(rate_limits),
        public_url,
        config: Arc::new(config),
        metrics: metrics::handle(),
        cancel: shutdown.clone(),
    };
    // The session gauges hold storage's counts from the first scrape on, even before any.
    metrics::count_sessions(&*app.broker).await;
    spawn_housekeeping(app.clone());
    spawn_retention(app.clone());
    crate::media_retention::spawn(app.clone());
    crate::library::tus::spawn_expiry(app.clone());
    let router = routes::router(app.clone());
    let limits = app.config.limits.clone();
    let task =
        tokio::spawn(async move { accept::serve(listener, router, &limits, shutdown).await });
    Ok(Running {
        addr,
        app,
        secret_source,
        task,
    })
}

async fn connect_broker(config: &Config) -> anyhow::Result<Arc<dyn Broker>> {
    Ok(match &config.broker {
        BrokerConfig::Memory => {
            Arc::new(MemoryBroker::new(config.history).with_rules(config.rules()))
        }
        BrokerConfig::Redis {
            url,
            prefix,
            command_timeout,
        } => Arc::new(
            RedisBroker::connect(RedisConfig {
                url: url.clone(),
                prefix: prefix.clone(),
                history: config.history,
                command_timeout: *command_timeout,
                rules: config.rules(),
                ..RedisConfig::default()
            })
            .await
            .context("cannot set up the Redis broker")?,
        ),
    })
}

/// Every `retention_check`, removes the private data of sessions that ended longer than the
/// retention ago. Every node runs it; a session scrubbed by another node is skipped (its
/// `scrubbed_at` is set), and a race between two nodes is settled by the store's
/// compare-and-set: the second scrub finds nothing left to remove.
fn spawn_retention(app: AppState) {
    tokio::spawn(async move {
        let every = app.config.retention_check;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = app.cancel.cancelled() => break,
                _ = tick.tick() => scrub_due(&app).await,
            }
        }
    });
}

async fn scrub_due(app: &AppState) {
    let sessions = match app.broker.sessions().await {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::warn!(error = %e, "retention: cannot list sessions; trying again later");
            return;
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let retention = app.config.retention;
    for session in sessions {
        let due = session.scrubbed_at.is_none()
            && session
                .ended_at
                .is_some_and(|ended| now - ended >= retention);
        if !due {
            continue;
        }
        match app.broker.scrub(session.id).await {
            Ok(()) => {
                tracing::info!(session = %session.id, "retention: private data removed");
                metrics::scrubbed().increment(1);
            }
            Err(e) => tracing::warn!(session = %session.id, error = %e, "retention: scrub failed"),
        }
    }
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
                    app.rate_limits.asks_by_address.retain_recent();
                    app.rate_limits.asks_by_session.retain_recent();
                }
            }
        }
    });
}
