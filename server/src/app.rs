//! What every request handler and socket shares.

use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Keys;
use crate::broker::Broker;
use crate::client::AddressKey;
use crate::config::Config;
use crate::hub::Hub;
use crate::model::{SessionId, UserId};
use crate::sockets::SocketSlots;

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
    /// Who holds this node's WebSocket slots: a node refuses more than it can hold, and no
    /// token or address takes more than its share.
    pub connections: Arc<SocketSlots>,
    /// Fires on shutdown: sockets close with 1001.
    pub cancel: CancellationToken,
    /// The WebRTC relay for the expert's video.
    pub relay: oncolive_signaling::Relay,
    /// Where recordings and library videos live (`--object-store`; shared by every node).
    pub media: oncolive_media::MediaStore,
}

/// Rate limiters shared by every socket and request of this node.
pub struct RateLimits {
    /// Questions per patient token.
    pub asks: DefaultKeyedRateLimiter<UserId>,
    pub joins: DefaultKeyedRateLimiter<AddressKey>,
    /// Questions per client address, over all the tokens it joined with.
    pub asks_by_address: DefaultKeyedRateLimiter<AddressKey>,
    /// Questions per session, from all its patients.
    pub asks_by_session: DefaultKeyedRateLimiter<SessionId>,
}

impl AppState {
    /// Things outside the hub that must stop when a session ends: its video.
    pub async fn session_ended(&self, id: SessionId) {
        tracing::info!(session = %id, "session ended");
        self.relay.end_session(&id.to_string()).await;
    }
}
