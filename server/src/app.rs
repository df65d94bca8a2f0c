//! What every request handler and socket shares.

use std::net::IpAddr;
use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Keys;
use crate::broker::Broker;
use crate::config::Config;
use crate::hub::Hub;
use crate::model::{SessionId, UserId};

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<dyn Broker>,
    pub hub: Arc<Hub>,
    pub keys: Arc<Keys>,
    /// The configuration the server started with, normalised.
    pub config: Arc<Config>,
    /// The address patients use, without a trailing slash: the configured one, or the bound one.
    pub public_url: Arc<str>,
    pub rate_limits: Arc<RateLimits>,
    pub metrics: PrometheusHandle,
    /// One permit per open WebSocket: a node refuses more than it can hold.
    pub connections: Arc<Semaphore>,
    /// Fires on shutdown: sockets close with 1001.
    pub cancel: CancellationToken,
    /// The WebRTC relay for the expert's video.
    pub relay: oncolive_signaling::Relay,
}

/// Rate limiters shared by every socket and request of this node.
pub struct RateLimits {
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
