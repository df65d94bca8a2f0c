//! How the video relay (the `signaling` crate) checks tokens against our sessions.

use std::sync::Arc;

use async_trait::async_trait;
use oncolive_signaling::{Access, AuthError, Authorizer};

use crate::auth::Keys;
use crate::broker::{Broker, BrokerError};
use crate::model::{Role, SessionState};

pub struct SessionAuthorizer {
    pub keys: Arc<Keys>,
    pub broker: Arc<dyn Broker>,
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
}
