//! How the relay asks its host whether a bearer token may publish or view.

use async_trait::async_trait;

/// What a valid token of a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The session's expert (or an admin): may publish and view.
    Publish,
    /// Any valid token of the session: may view.
    View,
}

/// Why a token was refused; each variant maps to one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// 401: missing, malformed, expired or unknown token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: a valid token without the right for this session or action.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such session.
    #[error("not found: {0}")]
    NotFound(String),
    /// 410: the session has ended.
    #[error("gone: {0}")]
    Gone(String),
    /// 503: the host cannot check right now (its storage is unreachable); try again.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Where a session's stream comes from when this node does not receive it: another node's
/// relay (the origin), pulled once over WHEP with a node credential and fanned out here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The origin's WHEP endpoint for the session.
    pub whep_url: String,
    /// A bearer token the origin accepts for viewing the session.
    pub token: String,
}

/// Checks bearer tokens; the server implements it with its own session store.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Check the bearer token (already stripped of `Bearer `) for session `session`.
    async fn authorize(&self, session: &str, token: &str) -> Result<Access, AuthError>;

    /// Whether the session's broadcast is recorded (when the relay has a
    /// [`crate::RecordingConfig`]). Asked each time a publisher starts, before
    /// its answer, so a host that turns recording off stops it at the next
    /// publisher.
    async fn records(&self, _session: &str) -> bool {
        true
    }

    /// The origin to pull `session` from, when another node receives its publisher; `None`
    /// when nobody publishes, this node does, or the host runs one node.
    async fn origin(&self, _session: &str) -> Option<Origin> {
        None
    }
}
