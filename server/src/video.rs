//! How the video relay (the `signaling` crate) checks tokens against our sessions, and where
//! it pulls a session from when another node receives the expert (origin–edge).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oncolive_signaling::{Access, AuthError, Authorizer, Origin};

use crate::auth::Keys;
use crate::broker::{Broker, BrokerError};
use crate::model::{Role, SessionId, SessionState};

/// How long a node's credential for pulling a session lasts (a pull is set up with it once).
const NODE_TOKEN_TTL: Duration = Duration::from_secs(600);

pub struct SessionAuthorizer {
    pub keys: Arc<Keys>,
    pub broker: Arc<dyn Broker>,
    /// Where other nodes reach this node (`--node-url`); `None`: nobody can pull from it.
    pub node_url: Option<Arc<str>>,
}

impl SessionAuthorizer {
    /// The origin to pull `id` from: the node whose publisher started last, unless that is this
    /// node or it cannot be reached (it announced no URL). The credential is a viewer token of
    /// the session, signed with the secret every node shares, named for this node.
    pub async fn origin_of(&self, id: SessionId) -> Option<Origin> {
        let url = self.broker.video_origin(id).await.ok()??;
        if url.is_empty() || self.node_url.as_deref() == Some(url.as_str()) {
            return None;
        }
        let name = format!("node {}", self.node_url.as_deref().unwrap_or("?"));
        let (_, token) = self
            .keys
            .issue(Role::Patient, Some(id), Some(name), NODE_TOKEN_TTL);
        Some(Origin {
            whep_url: format!("{url}/api/sessions/{id}/whep"),
            token,
        })
    }
}

#[async_trait]
impl Authorizer for SessionAuthorizer {
    async fn authorize(&self, session: &str, token: &str) -> Result<Access, AuthError> {
        let claims = self
            .keys
            .verify(token)
            .map_err(|e| AuthError::Unauthorized(e.to_string()))?;
        let id = session
            .parse()
            .map_err(|_| AuthError::NotFound(format!("{session} is not a session id")))?;
        claims
            .check_session(id)
            .map_err(|e| AuthError::Forbidden(e.to_string()))?;
        let found = match self.broker.session(id).await {
            Ok(found) => found,
            Err(BrokerError::Unavailable(m)) => return Err(AuthError::Unavailable(m.to_string())),
            Err(e) => return Err(AuthError::Unavailable(e.to_string())),
        };
        let found = found.ok_or_else(|| AuthError::NotFound("no such session".into()))?;
        claims
            .check_links_version(found.links_version)
            .map_err(|e| AuthError::Unauthorized(e.to_string()))?;
        if found.state == SessionState::Ended {
            return Err(AuthError::Gone("the session has ended".into()));
        }
        Ok(match claims.role {
            Role::Expert | Role::Admin => Access::Publish,
            Role::Moderator | Role::Patient => Access::View,
        })
    }

    /// The host's `record` switch; a session that cannot be read now is recorded (losing a
    /// broadcast is worse than keeping one the host can remove).
    async fn records(&self, session: &str) -> bool {
        let Ok(id) = session.parse() else {
            return false;
        };
        match self.broker.session(id).await {
            Ok(Some(found)) => found.record,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    async fn origin(&self, session: &str) -> Option<Origin> {
        self.origin_of(session.parse().ok()?).await
    }
}
