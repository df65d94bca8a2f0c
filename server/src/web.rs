//! The web app, embedded in the binary, and the security headers every response carries.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use crate::AppState;

#[derive(RustEmbed)]
#[folder = "../web/"]
struct Assets;

/// Scripts, styles and media only from this origin; no inline code, no framing; connections
/// only to this origin. `'self'` covers same-origin `ws:`/`wss:` only in CSP Level 3 browsers
/// (Chromium 58+, Safari 15.4+); the old Android WebViews and iPhones of our patients need the
/// socket's origin spelled out, which [`content_security_policy`] adds from the `Host` header.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The policy for a page requested with `Host: host`: [`CONTENT_SECURITY_POLICY`] with the
/// page's own host added to `connect-src` for `ws:` and `wss:` (and nothing else). The host is
/// the one the browser used for this very page, so it names no other origin; a `Host` that is
/// not a plain `name[:port]` or `[v6]:port` gets the bare policy.
pub fn policy_for_host(host: Option<&str>) -> String {
    let plain = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    match host.filter(|h| plain(h)) {
        Some(h) => CONTENT_SECURITY_POLICY.replacen(
            "connect-src 'self';",
            &format!("connect-src 'self' ws://{h} wss://{h};"),
            1,
        ),
        None => CONTENT_SECURITY_POLICY.to_owned(),
    }
}

/// Middleware: every response gets the policy for its request's host, unless it has one.
pub async fn content_security_policy(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    if !response
        .headers()
        .contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(value) = HeaderValue::from_str(&policy_for_host(host.as_deref()))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// Each page's path and the file it serves.
const PAGES: [(&str, &str); 7] = [
    ("/", "index.html"),
    ("/host", "host.html"),
    ("/s/{id}", "patient.html"),
    ("/s/{id}/expert", "expert.html"),
    ("/s/{id}/venue", "venue.html"),
    ("/s/{id}/moderate", "moderate.html"),
    ("/privacy.html", "privacy.html"),
];

pub fn routes() -> Router<AppState> {
    PAGES
        .into_iter()
        .fold(Router::new(), |router, (path, page)| {
            router.route(path, get(move |h: HeaderMap| async move { file(page, &h) }))
        })
        .route("/assets/{*path}", get(asset))
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    file(&format!("assets/{path}"), &headers)
}

fn file(path: &str, headers: &HeaderMap) -> Response {
    let Some(content) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!(
        "\"{}\"",
        content.metadata.sha256_hash()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // HTML is revalidated every time so a deploy is seen at once; assets are revalidated
    // after five minutes, cheaply, by ETag.
    let cache = if path.ends_with(".html") {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = content.metadata.mimetype();
        // The pages carry Chinese text: say the charset rather than let a browser guess.
        let mime = if mime.starts_with("text/") || mime.ends_with("javascript") {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_owned()
        };
        ([(header::CONTENT_TYPE, mime)], content.data.into_owned()).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_sockets_to_the_pages_own_host_only() {
        let p = policy_for_host(Some("live.hospital.example:8443"));
        assert!(p.contains(
            "connect-src 'self' ws://live.hospital.example:8443 wss://live.hospital.example:8443;"
        ));
        assert!(!p.contains("ws: ") && !p.contains("wss: "), "{p}");
        let v6 = policy_for_host(Some("[::1]:8080"));
        assert!(v6.contains("wss://[::1]:8080;"), "{v6}");
        // A Host that tries to add a source or a directive gets the bare policy.
        for hostile in ["evil.example; script-src *", "a b", "x/y", ""] {
            assert_eq!(policy_for_host(Some(hostile)), CONTENT_SECURITY_POLICY);
        }
        assert_eq!(policy_for_host(None), CONTENT_SECURITY_POLICY);
    }
}
