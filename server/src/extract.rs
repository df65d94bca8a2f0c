//! Extractors: the caller's verified (and, for staff, current) claims from `Authorization: Bearer`, and JSON bodies that
//! fail with our error body (axum's `examples/jwt` and `examples/customize-extractor-error`).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum_extra::TypedHeader;
use axum_extra::headers::Authorization;
use axum_extra::headers::authorization::Bearer;
use axum_extra::typed_header::TypedHeaderRejectionReason;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::auth::Claims;
use crate::error::ApiError;
use crate::model::Role;

/// The verified claims of the request's bearer token, whatever its role.
pub struct Caller(pub Claims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let TypedHeader(Authorization(bearer)) =
            TypedHeader::<Authorization<Bearer>>::from_request_parts(parts, app)
                .await
                .map_err(|e| {
                    ApiError::Unauthorized(match e.reason() {
                        TypedHeaderRejectionReason::Missing => {
                            "missing Authorization: Bearer token".into()
                        }
                        _ => "Authorization must be Bearer followed by a token".into(),
                    })
                })?;
        let claims = app.keys.verify(bearer.token())?;
        check_links(app, &claims).await?;
        Ok(Caller(claims))
    }
}

/// Refuses an expert's or moderator's token whose links the host has replaced. A session that
/// no longer exists passes: the handler answers 404.
pub async fn check_links(app: &AppState, claims: &Claims) -> Result<(), ApiError> {
    if let (true, Some(sid)) = (claims.role.holds_session_link(), claims.sid)
        && let Some(session) = app.broker.session(sid).await?
    {
        claims.check_links_version(session.links_version)?;
    }
    Ok(())
}

/// The claims of an admin's token; any other role is refused with 403.
pub struct Admin(pub Claims);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Caller(claims) = Caller::from_request_parts(parts, app).await?;
        if claims.role == Role::Admin {
            Ok(Admin(claims))
        } else {
            Err(ApiError::Forbidden("only an admin may do this".into()))
        }
    }
}

/// A JSON body. Any content type is read as JSON (a `fetch` of a string body without a header
/// sends `text/plain`); an empty body reads as `null`, so `JsonBody<Option<T>>` makes it optional.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
                    "request bodies are limited to {} bytes",
                    crate::routes::MAX_BODY_BYTES
                )),
                _ => ApiError::BadRequest(format!("cannot read the body: {e}")),
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads a request body as JSON the way [`JsonBody`] does (the fuzzer calls it directly): blank
/// reads as `null`, anything else must be one JSON object (or `null`) of type `T`. serde would
/// also read a struct from an array of its fields in order, so `[]` would pass as an empty
/// change; every body of the API is an object, so anything else is refused first.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{') | Some(b'n')) {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(text).map_err(|e| match text {
        b"null" => ApiError::BadRequest("a JSON body is required".into()),
        _ => ApiError::BadRequest(format!("invalid JSON body: {e}")),
    })
}
