//! The WHIP/WHEP HTTP edge (RFC 9725 and the WHEP draft): routes, request
//! checks, status codes and headers. It knows HTTP only: negotiation, trickle
//! ICE and teardown are [`Relay`] operations, so no `webrtc` type appears here.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri, Path, State};
use axum::http::header::{
    ACCESS_CONTROL_EXPOSE_HEADERS, ALLOW, CONTENT_TYPE, ETAG, IF_MATCH, LINK, LOCATION,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use axum_extra::TypedHeader;
use axum_extra::headers::Authorization;
use axum_extra::headers::authorization::Bearer;
use serde::Deserialize;

use crate::auth::AuthError;
use crate::config::link_value;
use crate::error::ApiError;
use crate::layer_choice::Preference;
use crate::relay::{Relay, Role};

const SDP: &str = "application/sdp";
const SDP_FRAGMENT: &str = "application/trickle-ice-sdpfrag";
const JSON: &str = "application/json";
/// The WHEP draft's link relation for its video layer selection extension.
const LAYER_REL: &str = "urn:ietf:params:whep:ext:core:layer";
/// Largest body of a layer request (`{"prefer":"auto"}` is 17 bytes).
const MAX_LAYER_BODY: usize = 1024;
const PUBLISHER_STATE: HeaderName = HeaderName::from_static("x-oncolive-publisher");
const EXPOSED: HeaderValue = HeaderValue::from_static("Location, Link, ETag, X-Oncolive-Publisher");

impl Relay {
    /// The WHIP/WHEP routes (`/api/sessions/{id}/whip`, `/whep` and their
    /// resources), a stateless router for the host to merge.
    pub fn router(&self) -> Router {
        Router::new()
            .nest("/api/sessions/{id}/whip", side_routes(Role::Publisher))
            .nest("/api/sessions/{id}/whep", side_routes(Role::Viewer))
            .with_state(self.clone())
    }
}

/// One route family for both sides: the endpoint (`POST`, `OPTIONS`) and its
/// resources (`PATCH`, `DELETE`, `OPTIONS`). The same handlers serve WHIP and
/// WHEP; the side they act for is the [`Role`] this router attaches.
fn side_routes(role: Role) -> Router<Relay> {
    Router::new()
        .route("/", post(create).options(options))
        .route(
            "/{resource}",
            axum::routing::delete(delete).patch(patch).options(options),
        )
        .route("/{resource}/layer", get(get_layer).post(post_layer))
        .layer(Extension(role))
}

/// The side of the route family a request came through.
impl<S: Send + Sync> FromRequestParts<S> for Role {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Only routes of `side_routes` reach these handlers, and they all carry it.
        parts
            .extensions
            .get::<Role>()
            .copied()
            .ok_or(ApiError::ResourceNotFound)
    }
}

/// The request's bearer token. A missing or malformed `Authorization` header
/// is a 401 with the relay's error body (axum-extra's own rejection is a
/// plain-text 400).
struct BearerToken(String);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let missing = || {
            ApiError::from(AuthError::Unauthorized(
                "an \"Authorization: Bearer TOKEN\" header is required".to_owned(),
            ))
        };
        let TypedHeader(Authorization(bearer)) =
            TypedHeader::<Authorization<Bearer>>::from_request_parts(parts, state)
                .await
                .map_err(|_| missing())?;
        let token = bearer.token().trim();
        if token.is_empty() {
            return Err(missing());
        }
        Ok(BearerToken(token.to_owned()))
    }
}

#[derive(Deserialize)]
struct SessionPath {
    id: String,
}

#[derive(Deserialize)]
struct ResourcePath {
    resource: String,
}

/// A caller the host's [`Authorizer`](crate::Authorizer) lets act on this side
/// of the session in the path (publish on WHIP, view on WHEP): the claims
/// extractor of axum's `jwt` example. Checked before anything else of the request.
struct Authorized {
    session: String,
    role: Role,
    token: String,
    /// The client's address when the host serves with connect info (axum's
    /// `into_make_service_with_connect_info::<SocketAddr>`).
    client: Option<IpAddr>,
}

impl FromRequestParts<Relay> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, relay: &Relay) -> Result<Self, ApiError> {
        let role = Role::from_request_parts(parts, relay).await?;
        let Path(SessionPath { id }) = Path::from_request_parts(parts, relay)
            .await
            .map_err(|_| ApiError::ResourceNotFound)?;
        let BearerToken(token) = BearerToken::from_request_parts(parts, relay).await?;
        relay.authorize(&id, &token, role).await?;
        let client = client_ip(parts, relay.config().trust_forwarded_for);
        Ok(Authorized {
            session: id,
            role,
            token,
            client,
        })
    }
}

#[tracing::instrument(name = "whip_whep_post", skip_all, fields(session = %caller.session, role = caller.role.path()))]
async fn create(
    State(relay): State<Relay>,
    caller: Authorized,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_content_type(&headers, SDP)?;
    let offer = read_text(body, relay.config().max_sdp_bytes).await?;
    let created = relay
        .create(
            &caller.session,
            caller.role,
            offer,
            &caller.token,
            caller.client,
        )
        .await?;

    let location = format!(
        "{}/{}",
        uri.path().trim_end_matches('/'),
        created.resource_id
    );
    let mut response = (StatusCode::CREATED, created.answer).into_response();
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(SDP));
    out.insert(ETAG, etag(&created.ice_session));
    if let Ok(location) = HeaderValue::from_str(&location) {
        out.insert(LOCATION, location);
    }
    out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    if caller.role == Role::Viewer {
        let state = if created.publisher_live {
            "live"
        } else {
            "waiting"
        };
        out.insert(PUBLISHER_STATE, HeaderValue::from_static(state));
    }
    add_links(&relay, out, &created.resource_id);
    if caller.role == Role::Viewer
        && let Ok(value) =
            HeaderValue::from_str(&format!("<{location}/layer>; rel=\"{LAYER_REL}\""))
    {
        out.append(LINK, value);
    }
    Ok(response)
}

#[tracing::instrument(name = "whip_whep_delete", skip_all, fields(session = %caller.session, role = caller.role.path(), resource = %resource))]
async fn delete(
    State(relay): State<Relay>,
    caller: Authorized,
    Path(ResourcePath { resource }): Path<ResourcePath>,
) -> Result<StatusCode, ApiError> {
    if relay.delete(&caller.session, caller.role, &resource).await {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::ResourceNotFound)
    }
}

/// A layer request's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerRequest {
    prefer: Preference,
}

/// `GET …/whep/{resource}/layer`: the viewer's layer choice and the publisher's layers.
#[tracing::instrument(name = "whep_layer_get", skip_all, fields(session = %caller.session, resource = %resource))]
async fn get_layer(
    State(relay): State<Relay>,
    caller: Authorized,
    Path(ResourcePath { resource }): Path<ResourcePath>,
) -> Result<Response, ApiError> {
    if caller.role != Role::Viewer {
        return Err(ApiError::ResourceNotFound);
    }
    let state = relay.layer(&caller.session, &resource, None)?;
    Ok(axum::Json(state).into_response())
}

/// `POST …/whep/{resource}/layer` with `{"prefer": "auto" | "low" | "high"}`: the viewer's
/// choice (auto, data saver, high). Answers as `GET` does, after the change.
#[tracing::instrument(name = "whep_layer_post", skip_all, fields(session = %caller.session, resource = %resource))]
async fn post_layer(
    State(relay): State<Relay>,
    caller: Authorized,
    Path(ResourcePath { resource }): Path<ResourcePath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if caller.role != Role::Viewer {
        return Err(ApiError::ResourceNotFound);
    }
    require_content_type(&headers, JSON)?;
    let bytes = axum::body::to_bytes(body, MAX_LAYER_BODY)
        .await
        .map_err(|_| {
            ApiError::BadRequest(
                "bad_request",
                format!("the body is larger than {MAX_LAYER_BODY} bytes"),
            )
        })?;
    let request: LayerRequest = serde_json::from_slice(&bytes).map_err(|err| {
        ApiError::BadRequest(
            "bad_request",
            format!("expected {{\"prefer\": \"auto\" | \"low\" | \"high\"}}: {err}"),
        )
    })?;
    let state = relay.layer(&caller.session, &resource, Some(request.prefer))?;
    Ok(axum::Json(state).into_response())
}

/// Trickle ICE and ICE restarts (RFC 9725 §4.3): late candidates get `204`;
/// new ICE credentials restart ICE on the same resource and get `200` with the
/// relay's new credentials and candidates, and the new ICE session's `ETag`.
#[tracing::instrument(name = "whip_whep_patch", skip_all, fields(session = %caller.session, role = caller.role.path(), resource = %resource))]
async fn patch(
    State(relay): State<Relay>,
    caller: Authorized,
    Path(ResourcePath { resource }): Path<ResourcePath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_content_type(&headers, SDP_FRAGMENT)?;
    let if_match = if_match_tags(&headers);
    let fragment = read_text(body, relay.config().max_sdp_bytes).await?;
    let patched = relay
        .patch(
            &caller.session,
            caller.role,
            &resource,
            if_match.as_deref(),
            &fragment,
        )
        .await?;
    let Some(answer) = patched.restarted else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut response = (StatusCode::OK, answer).into_response();
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(SDP_FRAGMENT));
    out.insert(ETAG, etag(&patched.ice_session));
    out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    // Fresh TURN credentials: the first ones may have expired by now.
    add_links(&relay, out, &resource);
    Ok(response)
}

/// The entity tags of `If-Match` without their quotes; `None` when there is
/// no such header or it is `*` (any ICE session, as an ICE restart sends).
/// Weak tags never match (`If-Match` compares strongly, RFC 9110 §13.1.1).
fn if_match_tags(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    let mut any = true;
    for value in headers.get_all(IF_MATCH) {
        any = false;
        let Ok(value) = value.to_str() else { continue };
        for tag in value.split(',').map(str::trim) {
            if tag == "*" {
                return None;
            }
            if let Some(inner) = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                tags.push(inner.to_owned());
            }
        }
    }
    (!any).then_some(tags)
}

#[derive(Deserialize)]
struct OptionsPath {
    id: String,
    resource: Option<String>,
}

/// `OPTIONS` on an endpoint or a resource. The ICE servers (which may carry
/// TURN credentials) only for a valid token of the session.
async fn options(
    State(relay): State<Relay>,
    Path(OptionsPath { id, resource }): Path<OptionsPath>,
    token: Result<BearerToken, ApiError>,
) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    if resource.is_none() {
        out.insert(ALLOW, HeaderValue::from_static("OPTIONS, POST"));
        out.insert("accept-post", HeaderValue::from_static(SDP));
    } else {
        out.insert(ALLOW, HeaderValue::from_static("OPTIONS, PATCH, DELETE"));
        out.insert("accept-patch", HeaderValue::from_static(SDP_FRAGMENT));
    }
    out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    if let Ok(BearerToken(token)) = token
        && relay.authorize(&id, &token, Role::Viewer).await.is_ok()
    {
        // Not a resource yet: the credential names a fresh id of its own.
        let user = uuid::Uuid::now_v7().simple().to_string();
        add_links(&relay, response.headers_mut(), &user);
    }
    response
}

/// The ICE servers as `Link` headers; TURN URLs carry a credential minted for
/// `user` (the resource id), valid for the configured lifetime only.
fn add_links(relay: &Relay, out: &mut HeaderMap, user: &str) {
    let config = relay.config();
    let credential = config.turn.as_ref().map(|turn| turn.mint(user));
    for url in config.ice_servers.iter().flat_map(|s| &s.urls) {
        match HeaderValue::from_str(&link_value(url, credential.as_ref())) {
            Ok(value) => {
                out.append(LINK, value);
            }
            Err(_) => tracing::warn!("an ICE server URL cannot be sent in a Link header"),
        }
    }
}

/// The TCP peer, or with `trust_forwarded_for` the address our proxy
/// appended last to `X-Forwarded-For` (earlier entries are the client's word).
fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for && let Some(ip) = crate::forwarded::last_forwarded_for(&parts.headers) {
        return Some(ip);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

fn etag(ice_session: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{ice_session}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

fn require_content_type(headers: &HeaderMap, expected: &'static str) -> Result<(), ApiError> {
    let actual = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(expected))
    }
}

async fn read_text(body: Body, limit: usize) -> Result<String, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::BadRequest(
            "sdp_too_large",
            format!("the body is larger than {limit} bytes (or could not be read)"),
        )
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad_sdp("the body is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use axum::http::header::AUTHORIZATION;

    use super::*;

    async fn token(header: Option<&'static str>) -> Option<String> {
        let mut request = Request::builder();
        if let Some(value) = header {
            request = request.header(AUTHORIZATION, value);
        }
        let (mut parts, ()) = request.body(()).ok()?.into_parts();
        let BearerToken(token) = BearerToken::from_request_parts(&mut parts, &())
            .await
            .ok()?;
        Some(token)
    }

    #[tokio::test]
    async fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(token(None).await, None);
        assert_eq!(token(Some("Basic abc")).await, None);
        assert_eq!(token(Some("Bearer  ")).await, None);
        assert_eq!(token(Some("bearer  tok ")).await.as_deref(), Some("tok"));
    }
}
