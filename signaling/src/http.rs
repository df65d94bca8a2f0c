//! The WHIP/WHEP HTTP edge (RFC 9725 and the WHEP draft): request checks,
//! status codes and headers. Media work happens in `relay`.

use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::header::{
    ACCESS_CONTROL_EXPOSE_HEADERS, ALLOW, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LINK,
    LOCATION,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;

use crate::auth::AuthError;
use crate::error::ApiError;
use crate::relay::{Relay, Role};
use crate::sdp;

const SDP: &str = "application/sdp";
const SDP_FRAGMENT: &str = "application/trickle-ice-sdpfrag";
const PUBLISHER_STATE: HeaderName = HeaderName::from_static("x-oncolive-publisher");
const EXPOSED: HeaderValue = HeaderValue::from_static("Location, Link, ETag, X-Oncolive-Publisher");

pub(crate) fn router(relay: Relay) -> Router {
    Router::new()
        .route(
            "/api/sessions/{id}/whip",
            post(post_whip).options(options_endpoint),
        )
        .route(
            "/api/sessions/{id}/whep",
            post(post_whep).options(options_endpoint),
        )
        .route(
            "/api/sessions/{id}/whip/{resource}",
            axum::routing::delete(delete_whip)
                .patch(patch_whip)
                .options(options_resource),
        )
        .route(
            "/api/sessions/{id}/whep/{resource}",
            axum::routing::delete(delete_whep)
                .patch(patch_whep)
                .options(options_resource),
        )
        .with_state(relay)
}

async fn post_whip(
    State(relay): State<Relay>,
    Path(session): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    create(relay, session, Role::Publisher, uri, headers, body).await
}

async fn post_whep(
    State(relay): State<Relay>,
    Path(session): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    create(relay, session, Role::Viewer, uri, headers, body).await
}

#[tracing::instrument(name = "whip_whep_post", skip_all, fields(session = %session, role = role.path()))]
async fn create(
    relay: Relay,
    session: String,
    role: Role,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    relay.authorize(&session, bearer(&headers)?, role).await?;
    require_content_type(&headers, SDP)?;
    let offer_sdp = read_text(body, relay.shared.config.max_sdp_bytes).await?;
    let offer = sdp::parse_offer(&offer_sdp).map_err(ApiError::bad_sdp)?;
    let created = relay.create(&session, role, offer_sdp, &offer).await?;

    let location = format!(
        "{}/{}",
        uri.path().trim_end_matches('/'),
        created.resource_id
    );
    let mut response = (StatusCode::CREATED, created.answer).into_response();
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(SDP));
    out.insert(ETAG, etag(&created.resource_id));
    if let Ok(location) = HeaderValue::from_str(&location) {
        out.insert(LOCATION, location);
    }
    out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    if role == Role::Viewer {
        let state = if created.publisher_live {
            "live"
        } else {
            "waiting"
        };
        out.insert(PUBLISHER_STATE, HeaderValue::from_static(state));
    }
    add_links(&relay, out);
    Ok(response)
}

async fn delete_whip(
    State(relay): State<Relay>,
    Path((session, resource)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    delete(relay, session, Role::Publisher, resource, headers).await
}

async fn delete_whep(
    State(relay): State<Relay>,
    Path((session, resource)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    delete(relay, session, Role::Viewer, resource, headers).await
}

#[tracing::instrument(name = "whip_whep_delete", skip_all, fields(session = %session, role = role.path(), resource = %resource))]
async fn delete(
    relay: Relay,
    session: String,
    role: Role,
    resource: String,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    relay.authorize(&session, bearer(&headers)?, role).await?;
    if relay.delete(&session, role, &resource).await {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::ResourceNotFound)
    }
}

async fn patch_whip(
    State(relay): State<Relay>,
    Path((session, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    patch(relay, session, Role::Publisher, resource, headers, body).await
}

async fn patch_whep(
    State(relay): State<Relay>,
    Path((session, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    patch(relay, session, Role::Viewer, resource, headers, body).await
}

/// Trickle ICE (RFC 8840 fragments): the client's late candidates are added
/// to the peer connection. ICE restarts are not supported (422).
#[tracing::instrument(name = "whip_whep_patch", skip_all, fields(session = %session, role = role.path(), resource = %resource))]
async fn patch(
    relay: Relay,
    session: String,
    role: Role,
    resource: String,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    relay.authorize(&session, bearer(&headers)?, role).await?;
    require_content_type(&headers, SDP_FRAGMENT)?;
    let pc = relay
        .peer(&session, role, &resource)
        .ok_or(ApiError::ResourceNotFound)?;
    if let Some(if_match) = headers.get(IF_MATCH)
        && if_match != "*"
        && *if_match != etag(&resource)
    {
        return Err(ApiError::PreconditionFailed);
    }
    let fragment = read_text(body, relay.shared.config.max_sdp_bytes).await?;
    let remote_ufrag = pc
        .remote_description()
        .await
        .and_then(|d| attribute_value(&d.sdp, "ice-ufrag").map(str::to_owned));
    let trickle = parse_fragment(&fragment);
    if let (Some(new), Some(current)) = (&trickle.ufrag, &remote_ufrag)
        && new != current
    {
        return Err(ApiError::Unprocessable(
            "ICE restart is not supported; DELETE this resource and POST a new offer",
        ));
    }
    for candidate in trickle.candidates {
        pc.add_ice_candidate(RTCIceCandidateInit {
            candidate: candidate.line,
            sdp_mid: candidate.mid,
            sdp_mline_index: candidate.mline_index,
            username_fragment: trickle.ufrag.clone(),
        })
        .await
        .map_err(|err| {
            ApiError::BadRequest("invalid_candidate", format!("candidate rejected: {err}"))
        })?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn options_endpoint(
    State(relay): State<Relay>,
    Path(session): Path<String>,
    headers: HeaderMap,
) -> Response {
    options(relay, session, headers, "OPTIONS, POST").await
}

async fn options_resource(
    State(relay): State<Relay>,
    Path((session, _resource)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    options(relay, session, headers, "OPTIONS, PATCH, DELETE").await
}

/// The ICE servers (which may carry TURN credentials) only for a valid token.
async fn options(
    relay: Relay,
    session: String,
    headers: HeaderMap,
    allow: &'static str,
) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(ALLOW, HeaderValue::from_static(allow));
    if allow.contains("POST") {
        out.insert("accept-post", HeaderValue::from_static(SDP));
    } else {
        out.insert("accept-patch", HeaderValue::from_static(SDP_FRAGMENT));
    }
    out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    if let Ok(token) = bearer(&headers)
        && relay.authorize(&session, token, Role::Viewer).await.is_ok()
    {
        add_links(&relay, response.headers_mut());
    }
    response
}

fn add_links(relay: &Relay, out: &mut HeaderMap) {
    for server in &relay.shared.config.ice_servers {
        for link in server.link_values() {
            match HeaderValue::from_str(&link) {
                Ok(value) => {
                    out.append(LINK, value);
                }
                Err(_) => tracing::warn!("an ICE server URL cannot be sent in a Link header"),
            }
        }
    }
}

fn etag(resource: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{resource}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let missing = || {
        AuthError::Unauthorized("an \"Authorization: Bearer TOKEN\" header is required".to_owned())
    };
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing().into());
    }
    Ok(token)
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

fn attribute_value<'a>(sdp: &'a str, key: &str) -> Option<&'a str> {
    sdp.lines().find_map(|line| {
        line.trim()
            .strip_prefix("a=")?
            .strip_prefix(key)?
            .strip_prefix(':')
    })
}

#[derive(Debug, Default, PartialEq)]
struct Trickle {
    ufrag: Option<String>,
    candidates: Vec<Candidate>,
}

#[derive(Debug, PartialEq)]
struct Candidate {
    line: String,
    mid: Option<String>,
    mline_index: Option<u16>,
}

/// Reads an `application/trickle-ice-sdpfrag` body (RFC 8840 §4.4).
fn parse_fragment(fragment: &str) -> Trickle {
    let mut trickle = Trickle::default();
    let mut mline_index: Option<u16> = None;
    let mut mid: Option<String> = None;
    for line in fragment.lines().map(str::trim) {
        if line.starts_with("m=") {
            mline_index = Some(mline_index.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("a=ice-ufrag:") {
            trickle.ufrag = Some(value.to_owned());
        } else if let Some(candidate) = line.strip_prefix("a=")
            && candidate.starts_with("candidate:")
        {
            trickle.candidates.push(Candidate {
                line: candidate.to_owned(),
                mid: mid.clone(),
                mline_index,
            });
        }
    }
    trickle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_candidates_keep_their_section() {
        let fragment = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\na=end-of-candidates\r\n";
        let trickle = parse_fragment(fragment);
        assert_eq!(trickle.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(
            trickle.candidates,
            vec![Candidate {
                line: "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0"
                    .into(),
                mid: Some("0".into()),
                mline_index: Some(0),
            }]
        );
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut headers = HeaderMap::new();
        assert!(bearer(&headers).is_err());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer(&headers).is_err());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  tok "));
        assert_eq!(bearer(&headers).ok(), Some("tok"));
    }
}
