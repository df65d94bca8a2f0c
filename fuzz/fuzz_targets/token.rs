//! Token parsing: `Keys::verify` on arbitrary strings, and on arbitrary claims that carry a
//! valid signature (what a leaked secret, or a bug in issuing, would let through).
#![no_main]

use std::sync::LazyLock;

use jsonwebtoken::{EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use oncolive_server::auth::Keys;
use oncolive_server::model::Role;
use uuid::Uuid;

const SECRET: &[u8] = b"oncolive fuzzing secret, not a real one";
static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::new(SECRET));

fn check(token: &str) {
    if let Ok(claims) = KEYS.verify(token) {
        // Every accepted non-admin token names its session.
        assert!(claims.role == Role::Admin || claims.sid.is_some());
        let _ = claims.expires_in();
        let _ = claims.check_session(Uuid::nil());
        let _ = claims.actor();
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    if let Ok(claims @ serde_json::Value::Object(_)) = serde_json::from_str(text) {
        let key = EncodingKey::from_secret(SECRET);
        if let Ok(token) = jsonwebtoken::encode(&Header::default(), &claims, &key) {
            check(&token);
        }
    }
});
