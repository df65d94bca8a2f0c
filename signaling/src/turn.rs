//! Short-lived TURN credentials, in the shared-secret scheme of the TURN REST
//! API that coturn implements (`use-auth-secret` + `static-auth-secret`):
//! username `<expiry unix time>:<user id>`, password
//! `base64(HMAC-SHA1(secret, username))`. The TURN server recomputes the
//! password from the username and refuses it once the expiry has passed, so a
//! credential that leaks is useless after its lifetime and the relay never
//! hands out a password that works forever.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

/// The secret shared with the TURN server. `Debug` never shows it.
#[derive(Clone)]
pub struct TurnSecret(String);

impl TurnSecret {
    /// A secret as given (a trailing newline of a secret file is not part of it).
    pub fn new(secret: impl Into<String>) -> Result<TurnSecret, String> {
        let secret: String = secret.into();
        let secret = secret.trim_end_matches(['\r', '\n']).to_owned();
        if secret.is_empty() {
            return Err("the TURN secret is empty".to_owned());
        }
        Ok(TurnSecret(secret))
    }

    /// The credential for `user` that the TURN server accepts until `expires`.
    pub fn credential(&self, user: &str, expires: SystemTime) -> TurnCredential {
        let expiry = expires
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let username = format!("{expiry}:{user}");
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, self.0.as_bytes());
        let credential = BASE64.encode(hmac::sign(&key, username.as_bytes()).as_ref());
        TurnCredential {
            username,
            credential,
        }
    }
}

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(***)")
    }
}

/// How the relay mints TURN credentials.
#[derive(Debug, Clone)]
pub struct TurnAuth {
    pub secret: TurnSecret,
    /// How long a minted credential works. TURN clients refresh their
    /// allocation with the same credential, so this must outlast the longest
    /// viewing; a viewer that reconnects gets a fresh one.
    pub ttl: Duration,
}

impl TurnAuth {
    /// Default lifetime: longer than any broadcast, short enough that a
    /// leaked credential soon stops working.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3 * 3600);

    pub(crate) fn mint(&self, user: &str) -> TurnCredential {
        self.secret.credential(user, SystemTime::now() + self.ttl)
    }
}

/// A TURN username and password, as sent in a `Link` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub credential: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_api() {
        // `printf '%s' 1700000000:alice | openssl dgst -sha1 -hmac north-wind -binary | base64`
        let secret = TurnSecret::new("north-wind\n").expect("secret");
        let credential =
            secret.credential("alice", UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(credential.username, "1700000000:alice");
        assert_eq!(credential.credential, "Oko4dt8u/EbTRjRUJWQDFm/zTCc=");
        assert_eq!(format!("{secret:?}"), "TurnSecret(***)");
        assert!(TurnSecret::new("\n").is_err());
    }
}
