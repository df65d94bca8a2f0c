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

/// Scripts, styles and media only from this origin; no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Each page's path and the file it serves.
const PAGES: [(&str, &str); 5] = [
    ("/", "index.html"),
    ("/host", "host.html"),
    ("/s/{id}", "patient.html"),
    ("/s/{id}/expert", "expert.html"),
    ("/s/{id}/moderate", "moderate.html"),
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
