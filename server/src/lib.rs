//! OncoLive's server: the HTTP API, the WebSocket hub and the embedded web app.
//!
//! `main` parses the configuration and calls [`start`]; the integration tests call it the same
//! way on `127.0.0.1:0`.

pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod domain;
pub mod error;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod video;
pub mod web;
pub mod ws;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Keys, SecretSource};
use crate::broker::{Broker, MemoryBroker, RedisBroker, RedisConfig};
use crate::config::{ServeArgs, Settings};
use crate::hub::Hub;
use crate::model::{Moderation, NewSession, SessionId, UserId};

/// Kernel send buffer per client socket (Linux doubles it for its bookkeeping). Enough for
/// a snapshot of a few hundred questions in one go; bursts beyond it wait for the client.
pub const SOCKET_SEND_BUFFER: usize = 64 * 1024;

/// Largest HTTP request body (session creation, joins, SDP).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<dyn Broker>,
    pub hub: Arc<Hub>,
    pub keys: Arc<Keys>,
    pub settings: Arc<Settings>,
    pub limits: Arc<Limits>,
    pub metrics: PrometheusHandle,
    /// One permit per open WebSocket: a node refuses more than it can hold.
    pub connections: Arc<Semaphore>,
    /// Fires on shutdown: sockets close with 1001.
    pub cancel: CancellationToken,
    /// The WebRTC relay for the expert's video.
    pub relay: oncolive_signaling::Relay,
}

pub struct Limits {
    pub asks: DefaultKeyedRateLimiter<UserId>,
    pub joins: DefaultKeyedRateLimiter<IpAddr>,
}

impl AppState {
    /// Things outside the hub that must stop when a session ends: its video.
    pub async fn session_ended(&self, id: SessionId) {
        tracing::info!(session = %id, "session ended");
        self.relay.end_session(&id.to_string()).await;
    }
}

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
    args: &ServeArgs,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let settings = Settings::from_args(args, addr);
    let (secret, secret_source) =
        auth::load_secret(args.common.secret.as_deref(), &args.common.data_dir)?;
    let broker: Arc<dyn Broker> = match &args.redis {
        Some(url) => Arc::new(
            RedisBroker::connect(RedisConfig {
                url: url.clone(),
                prefix: args.redis_prefix.clone(),
                history: settings.history,
                retention: Duration::from_secs(args.retention_hours.saturating_mul(3600)),
                command_timeout: Duration::from_millis(args.redis_timeout_ms.max(100)),
                ..RedisConfig::default()
            })
            .await
            .context("cannot set up the Redis broker")?,
        ),
        None => Arc::new(MemoryBroker::new(
            settings.history,
            Duration::from_secs(args.retention_hours.saturating_mul(3600)),
        )),
    };

    let limits = Limits {
        asks: RateLimiter::keyed(Quota::per_minute(nonzero(settings.asks_per_minute))),
        joins: RateLimiter::keyed(
            Quota::per_second(nonzero(settings.joins_per_second))
                .allow_burst(nonzero(settings.joins_per_second.saturating_mul(5))),
        ),
    };
    let keys = Arc::new(Keys::new(&secret));
    let relay = oncolive_signaling::Relay::new(
        args.relay_config(),
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
        settings.socket_queue,
        shutdown.clone(),
        video,
    ));
    let app = AppState {
        broker,
        hub,
        relay,
        keys,
        connections: Arc::new(Semaphore::new(settings.max_connections)),
        settings: Arc::new(settings),
        limits: Arc::new(limits),
        metrics: metrics::handle(),
        cancel: shutdown.clone(),
    };
    spawn_housekeeping(app.clone());
    let router = router(app.clone());
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
                    app.limits.asks.retain_recent();
                    app.limits.joins.retain_recent();
                }
            }
        }
    });
}

pub fn router(app: AppState) -> Router {
    let security = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(web::CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(self), microphone=(self), geolocation=()"),
        ),
    ];
    let relay = app.relay.router();
    let mut router = api::routes()
        .merge(web::routes())
        .with_state(app)
        .merge(relay);
    for (name, value) in security {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router
        .layer(CompressionLayer::new())
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // The path only: query strings may carry tokens.
                tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
}

/// What `--ready-file` receives, for tests and scripts.
#[derive(Serialize)]
pub struct ReadyInfo {
    pub url: String,
    pub admin_token: String,
    pub host_link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo: Option<api::Created>,
}

/// The demo session of `--demo`, created at start.
pub async fn create_demo(app: &AppState) -> anyhow::Result<api::Created> {
    let new = NewSession {
        title: "Demo: lung cancer screening, ask the oncologist".into(),
        topic: "Who should be screened, what low-dose CT finds, what a nodule means".into(),
        expert_name: "Dr. Demo".into(),
        scheduled_start: OffsetDateTime::now_utc(),
        moderation: Moderation::Pre,
    };
    api::create_session(app, new)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the demo session: {e}"))
}
