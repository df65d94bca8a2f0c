//! The whole HTTP surface: the API, the web app and the relay's WHIP/WHEP, behind the layers
//! every response goes through (security headers, compression, body limit, tracing). The
//! library's tus uploads are the one exception to the body limit.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::{api, library, web};

/// Largest HTTP request body (session creation, joins, SDP).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(app: AppState) -> Router {
    let security = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(self), microphone=(self), geolocation=()"),
        ),
    ];
    let relay = app.relay.router();
    let limited = api::routes()
        .merge(crate::recording::routes())
        .merge(web::routes())
        .merge(library::routes())
        .with_state(app.clone())
        .merge(relay)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    // Upload chunks are far larger than any other body: the tus routes bound them themselves.
    let mut router = library::tus::routes().with_state(app).merge(limited);
    for (name, value) in security {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router
        .layer(axum::middleware::from_fn(web::content_security_policy))
        // Video and audio are compressed already, and a compressed body would lose its ranges.
        .layer(
            CompressionLayer::new().compress_when(
                DefaultPredicate::new()
                    .and(NotForContentType::const_new("video/"))
                    .and(NotForContentType::const_new("audio/")),
            ),
        )
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                // The path only: query strings may carry tokens.
                tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
}
