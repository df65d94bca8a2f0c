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
/// How long after its first issue a token can still be refreshed (`--token-max-age-days`):
/// a token that leaked once does not live for ever.
pub const TOKEN_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub exp: u64,
    /// When the holder's first token was issued (unix seconds), kept by every refresh so that
    /// refreshing is bounded by [`TOKEN_MAX_AGE`]. Tokens issued before this claim existed
    /// lack it; see [`Claims::first_issued`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_iat: Option<u64>,
    /// For expert and moderator tokens: the session's `links_version` they were issued for.
    #[serde(default, rename = "lv", skip_serializing_if = "is_zero")]
    pub links_version: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The lifetime a fresh token of `role` gets.
pub fn ttl_for(role: Role) -> Duration {
    if role == Role::Admin {
        ADMIN_TTL
    } else {
        SESSION_TTL
    }
}

impl Claims {
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.sub,
            role: self.role,
            name: self.name.clone(),
            links_version: self.links_version,
            consented_at: None,
        }
    }

    /// When the holder's first token was issued. A token from before `orig_iat` existed is
    /// taken to be as old as a fresh token of its role with its expiry would be, so it too can
    /// be refreshed only up to [`TOKEN_MAX_AGE`] from there.
    pub fn first_issued(&self) -> u64 {
        self.orig_iat
            .unwrap_or_else(|| self.exp.saturating_sub(ttl_for(self.role).as_secs()))
    }

    /// Whether this expert's or moderator's token was issued for the session's current links.
    pub fn check_links_version(&self, current: u32) -> Result<(), AuthError> {
        if self.role.holds_session_link() && self.links_version != current {
            return Err(AuthError::Revoked);
        }
        Ok(())
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
    /// An expert's or moderator's link that the host has replaced.
    #[error("this link was replaced by the host; ask the host for the new link")]
    Revoked,
    /// Refresh refused: the holder's first token is older than the maximum age.
    #[error(
        "this token was first issued more than {max_days} days ago and cannot be refreshed; join again or ask for a new link"
    )]
    TooOld { max_days: u64 },
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
        self.issue_for_links(role, session, name, 0, ttl)
    }

    /// A token for the links of version `links_version` (expert and moderator tokens).
    pub fn issue_for_links(
        &self,
        role: Role,
        session: Option<SessionId>,
        name: Option<String>,
        links_version: u32,
        ttl: Duration,
    ) -> (Claims, String) {
        let now = unix_now();
        let claims = Claims {
            sub: Uuid::now_v7(),
            role,
            sid: session,
            name,
            exp: now + ttl.as_secs(),
            orig_iat: Some(now),
            links_version,
        };
        let token = self.sign(&claims);
        (claims, token)
    }

    /// The same holder with a new expiry, never later than `max_age` after the first issue;
    /// refused once that is past.
    pub fn reissue(
        &self,
        claims: &Claims,
        ttl: Duration,
        max_age: Duration,
    ) -> Result<(Claims, String), AuthError> {
        let now = unix_now();
        let first = claims.first_issued();
        let last = first.saturating_add(max_age.as_secs());
        if now >= last {
            return Err(AuthError::TooOld {
                max_days: max_age.as_secs() / 86_400,
            });
        }
        let claims = Claims {
            exp: (now + ttl.as_secs()).min(last),
            orig_iat: Some(first),
            ..claims.clone()
        };
        Ok((claims.clone(), self.sign(&claims)))
    }

    /// Signs `claims` as they are (the CLI and tests; handlers use `issue` and `reissue`).
    pub fn sign(&self, claims: &Claims) -> String {
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

/// The secret from `ONCOLIVE_SECRET` (or `--secret-file`) when given; otherwise the one kept in the data directory,
/// made on first use so that `oncolive token` on the same machine agrees with the server.
pub fn load_secret(
    from_env: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Vec<u8>, SecretSource)> {
    if let Some(secret) = from_env.filter(|s| !s.is_empty()) {
        anyhow::ensure!(
            secret.len() >= 16,
            "the token secret (--secret, --secret-file or ONCOLIVE_SECRET) must be at least 16 bytes long"
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
    if !crate::files::create_private(&path, secret.as_bytes())? {
        // Another process (a second `serve`, `oncolive token`) made it first: use theirs.
        return load_secret(None, data_dir);
    }
    Ok((
        secret.into_bytes(),
        SecretSource::File {
            path: shown,
            created: true,
        },
    ))
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
    fn refresh_keeps_the_first_issue_time_and_stops_at_the_maximum_age() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let day = Duration::from_secs(86_400);
        let (first, _) = keys.issue(Role::Patient, Some(Uuid::now_v7()), None, SESSION_TTL);
        let (again, token) = keys.reissue(&first, SESSION_TTL, 90 * day).unwrap();
        assert_eq!(again.orig_iat, first.orig_iat);
        assert_eq!(again.sub, first.sub);
        assert_eq!(keys.verify(&token).unwrap(), again);
        // Near the end of its life a refreshed token expires at the maximum age, not later.
        let old = Claims {
            orig_iat: Some(unix_now() - 89 * 86_400),
            ..first.clone()
        };
        let (near_end, _) = keys.reissue(&old, SESSION_TTL, 90 * day).unwrap();
        assert!(near_end.exp <= unix_now() + 86_400);
        // Past the maximum age: refused, however fresh the token itself is.
        let older = Claims {
            orig_iat: Some(unix_now() - 91 * 86_400),
            ..first.clone()
        };
        assert!(matches!(
            keys.reissue(&older, SESSION_TTL, 90 * day),
            Err(AuthError::TooOld { max_days: 90 })
        ));
        // A token without `orig_iat` counts from its expiry minus its role's lifetime.
        let legacy = Claims {
            orig_iat: None,
            exp: unix_now() + 86_400,
            ..first
        };
        assert_eq!(
            legacy.first_issued(),
            unix_now() + 86_400 - SESSION_TTL.as_secs()
        );
        assert!(keys.reissue(&legacy, SESSION_TTL, 28 * day).is_err());
        assert!(keys.reissue(&legacy, SESSION_TTL, 90 * day).is_ok());
    }

    #[test]
    fn staff_tokens_carry_the_links_version_and_old_ones_are_revoked() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let sid = Some(Uuid::now_v7());
        let (old, token) = keys.issue_for_links(Role::Expert, sid, None, 3, SESSION_TTL);
        assert_eq!(keys.verify(&token).unwrap().links_version, 3);
        assert!(old.check_links_version(3).is_ok());
        assert!(matches!(
            old.check_links_version(4),
            Err(AuthError::Revoked)
        ));
        // Patients and admins hold no link that the host replaces.
        let (patient, _) = keys.issue(Role::Patient, sid, None, SESSION_TTL);
        assert!(patient.check_links_version(4).is_ok());
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
