//! Signed tokens: who you are, in which session, until when.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Actor;
use crate::model::{Role, SessionId, UserId};

/// Lifetime of an admin token: short, since it can do everything.
pub const ADMIN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Lifetime of a session's expert, moderator and patient tokens.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
}

impl Claims {
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.sub,
            role: self.role,
            name: self.name.clone(),
        }
    }

    /// Whether this token may act in `session`: admins everywhere, others in their own only.
    pub fn check_session(&self, session: SessionId) -> Result<(), AuthError> {
        match (self.role, self.sid) {
            (Role::Admin, _) => Ok(()),
            (_, Some(sid)) if sid == session => Ok(()),
            _ => Err(AuthError::Forbidden(format!(
                "this token belongs to another session, not {session}"
            ))),
        }
    }

    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.exp.saturating_sub(unix_now()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
}

/// The HMAC secret, for signing and checking.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(
        &self,
        role: Role,
        session: Option<SessionId>,
        name: Option<String>,
        ttl: Duration,
    ) -> (Claims, String) {
        let claims = Claims {
            sub: Uuid::now_v7(),
            role,
            sid: session,
            name,
            exp: unix_now() + ttl.as_secs(),
        };
        let token = self.sign(&claims);
        (claims, token)
    }

    /// The same holder with a new expiry.
    pub fn reissue(&self, claims: &Claims, ttl: Duration) -> (Claims, String) {
        let claims = Claims {
            exp: unix_now() + ttl.as_secs(),
            ..claims.clone()
        };
        (claims.clone(), self.sign(&claims))
    }

    fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            // Encoding an HMAC token of plain claims cannot fail.
            .unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AuthError::Unauthorized("token expired".into())
                }
                _ => AuthError::Unauthorized("invalid token".into()),
            })?;
        if data.claims.role != Role::Admin && data.claims.sid.is_none() {
            return Err(AuthError::Unauthorized("token names no session".into()));
        }
        Ok(data.claims)
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where the secret came from, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Environment,
    File { path: String, created: bool },
}

/// The secret from `ONCOLIVE_SECRET` when given; otherwise the one kept in the data directory,
/// made on first use so that `oncolive token` on the same machine agrees with the server.
pub fn load_secret(
    from_env: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Vec<u8>, SecretSource)> {
    if let Some(secret) = from_env.filter(|s| !s.is_empty()) {
        anyhow::ensure!(
            secret.len() >= 16,
            "ONCOLIVE_SECRET must be at least 16 bytes long"
        );
        return Ok((secret.as_bytes().to_vec(), SecretSource::Environment));
    }
    let path = data_dir.join("secret");
    let shown = path.display().to_string();
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        anyhow::ensure!(existing.len() >= 32, "the secret in {shown} is too short");
        return Ok((
            existing.as_bytes().to_vec(),
            SecretSource::File {
                path: shown,
                created: false,
            },
        ));
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &secret)?;
    Ok((
        secret.into_bytes(),
        SecretSource::File {
            path: shown,
            created: true,
        },
    ))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_a_forged_one_fails() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let sid = Uuid::now_v7();
        let (claims, token) = keys.issue(Role::Moderator, Some(sid), None, Duration::from_secs(60));
        assert_eq!(keys.verify(&token).unwrap(), claims);
        let other = Keys::new(b"another secret, also long enough");
        assert!(other.verify(&token).is_err());
        assert!(claims.check_session(sid).is_ok());
        assert!(claims.check_session(Uuid::now_v7()).is_err());
    }

    #[test]
    fn the_secret_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, src) = load_secret(None, dir.path()).unwrap();
        assert!(matches!(src, SecretSource::File { created: true, .. }));
        let (b, src) = load_secret(None, dir.path()).unwrap();
        assert!(matches!(src, SecretSource::File { created: false, .. }));
        assert_eq!(a, b);
    }
}
