//! WHIP/WHEP signaling and a selective-forwarding WebRTC relay.
//!
//! One publisher per session sends audio and video once; the relay forwards
//! the RTP packets, untouched apart from SSRC, payload type, sequence number
//! and timestamp, to every viewer of that session. The `webrtc` crate stays
//! behind this interface: the host only sees [`Relay`], [`RelayConfig`] and
//! [`Authorizer`]. See `docs/video.md`.

mod auth;
mod budget;
mod config;
mod edge;
mod engine;
mod error;
mod exposure;
mod fanout;
mod forwarded;
mod frames;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod keyframe;
mod kind;
mod layer_choice;
mod layers;
mod metrics;
mod nack;
mod publisher;
mod record;
mod record_follow;
mod record_rtp;
mod relay;
mod rewrite;
mod room;
mod sdp;
mod turn;
mod viewer;

pub use auth::{Access, AuthError, Authorizer, Origin};
pub use config::{IceServer, IceServerEntry, RelayConfig};
pub use error::SignalingError;
pub use forwarded::last_forwarded_for;
pub use layer_choice::Preference;
pub use layers::{LayerInfo, LayerState};
pub use metrics::describe as describe_metrics;
pub use record::RecordingConfig;
pub use relay::Relay;
pub use turn::{TurnAuth, TurnCredential, TurnSecret};
