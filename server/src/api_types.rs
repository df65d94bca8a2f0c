//! The bodies of the HTTP API, as clients send and receive them. The handlers build these
//! instead of `json!`, and clients (the test kit, the load generator) read them typed.

use serde::{Deserialize, Serialize};

use crate::model::{Session, SessionState, UserId};
use crate::protocol::VideoState;

/// `POST /api/sessions` and `GET /api/sessions/{id}/links`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    pub session: Session,
    pub links: Links,
    pub tokens: Tokens,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Links {
    pub patient: String,
    pub expert: String,
    pub moderator: String,
    pub qr_svg: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub expert: String,
    pub moderator: String,
}

/// `GET /api/sessions`: live first, then scheduled by start, then ended, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

/// `GET /api/sessions/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session: Session,
    pub viewers: u64,
    pub video: VideoState,
}

/// `PATCH /api/sessions/{id}` and `POST /api/sessions/{id}/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionReply {
    pub session: Session,
}

/// The body of `POST /api/sessions/{id}/join` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /api/sessions/{id}/join`: a patient token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    pub token: String,
    pub patient_id: UserId,
    pub name: Option<String>,
    pub session: Session,
    /// The relay's STUN/TURN servers (TURN with a short-lived credential), so the page can
    /// gather for WHEP without asking for them first (one round trip less on a slow link).
    #[serde(default)]
    pub ice_servers: Vec<oncolive_signaling::IceServerEntry>,
}

/// The body of `POST /api/sessions/{id}/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    pub state: SessionState,
}

/// `GET /api/me`: who a token belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub id: UserId,
    pub role: crate::model::Role,
    pub session: Option<crate::model::SessionId>,
    pub name: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
}

/// `POST /api/token/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refreshed {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}
