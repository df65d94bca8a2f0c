//! The HTTP API: sessions, joining, state changes, QR codes, health.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::{Json, Router, routing};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::api_types::{
    Created, JoinRequest, Joined, Links, Me, Refreshed, SessionInfo, SessionList, SessionReply,
    StateRequest, Tokens,
};
use crate::auth::{ADMIN_TTL, Claims, SESSION_TTL, ttl_for};
use crate::client::{AddressKey, client_ip};
use crate::domain::{Command, Reply, SessionChanges};
use crate::error::ApiError;
use crate::extract::{Admin, Caller, JsonBody};
use crate::model::{NewSession, Role, Session, SessionId, SessionState, checked_name};
use crate::protocol::VideoState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", routing::get(list).post(create))
        .route(
            "/api/sessions/{id}",
            routing::get(show).patch(update).delete(delete),
        )
        .route(
            "/api/sessions/{id}/export",
            routing::get(crate::export::export),
        )
        .route("/api/sessions/{id}/links", routing::get(links))
        .route(
            "/api/sessions/{id}/links/rotate",
            routing::post(crate::rotate::rotate),
        )
        .route("/api/sessions/{id}/join", routing::post(join))
        .route("/api/sessions/{id}/state", routing::post(set_state))
        .route("/api/sessions/{id}/qr.svg", routing::get(qr))
        .route(
            "/api/sessions/{id}/calendar.ics",
            routing::get(crate::calendar::get),
        )
        .route("/api/sessions/{id}/ws", routing::get(crate::ws::upgrade))
        .route("/api/me", routing::get(me))
        .route("/api/limits", routing::get(crate::limits::get))
        .route("/api/site", routing::get(crate::site::get))
        .route("/api/token/refresh", routing::post(refresh))
        .route("/healthz", routing::get(|| async { "ok" }))
        .route("/readyz", routing::get(ready))
        .route("/metrics", routing::get(metrics))
}

/// Fresh expert and moderator tokens for the session's links of version `links_version`, and
/// the links carrying them.
pub fn links_for(app: &AppState, id: SessionId, links_version: u32) -> (Links, Tokens) {
    let base = &app.public_url;
    let issue = |role| {
        let (_, token) = app
            .keys
            .issue_for_links(role, Some(id), None, links_version, SESSION_TTL);
        token
    };
    let (expert, moderator) = (issue(Role::Expert), issue(Role::Moderator));
    (
        Links {
            patient: format!("{base}/s/{id}"),
            expert: format!("{base}/s/{id}/expert#token={expert}"),
            moderator: format!("{base}/s/{id}/moderate#token={moderator}"),
            qr_svg: format!("{base}/api/sessions/{id}/qr.svg"),
        },
        Tokens { expert, moderator },
    )
}

pub fn admin_link(app: &AppState) -> (String, String) {
    let (_, token) = app.keys.issue(Role::Admin, None, None, ADMIN_TTL);
    (format!("{}/host#token={token}", app.public_url), token)
}

pub async fn create_session(app: &AppState, new: NewSession) -> Result<Created, ApiError> {
    let new = new.validate().map_err(ApiError::Invalid)?;
    let session = new.into_session(Uuid::now_v7(), OffsetDateTime::now_utc());
    app.broker.create_session(session.clone()).await?;
    tracing::info!(session = %session.id, title = %session.title, "session created");
    let (links, tokens) = links_for(app, session.id, session.links_version);
    Ok(Created {
        session,
        links,
        tokens,
    })
}

async fn create(
    State(app): State<AppState>,
    _: Admin,
    JsonBody(new): JsonBody<NewSession>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(create_session(&app, new).await?)))
}

async fn list(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut sessions = app.broker.sessions().await?;
    let rank = |s: &Session| match s.state {
        SessionState::Live => 0,
        SessionState::Scheduled => 1,
        SessionState::Ended => 2,
    };
    sessions.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then_with(|| match a.state {
            SessionState::Ended => b.ended_at.cmp(&a.ended_at),
            _ => a.scheduled_start.cmp(&b.scheduled_start),
        })
    });
    let sessions = sessions.iter().map(Session::public_view).collect();
    Ok(Json(SessionList { sessions }))
}

async fn find(app: &AppState, id: SessionId) -> Result<Session, ApiError> {
    app.broker
        .session(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such session".into()))
}

async fn show(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
) -> Result<impl IntoResponse, ApiError> {
    let session = find(&app, id).await?;
    let viewers = app.hub.viewers(id).await.unwrap_or(0);
    let video = if session.state != SessionState::Ended && app.broker.video_live(id).await? {
        VideoState::Live
    } else {
        VideoState::Waiting
    };
    Ok(Json(SessionInfo {
        session: session.public_view(),
        viewers,
        video,
    }))
}

/// Removes a session and everything of it, public questions and answers included.
async fn delete(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    _: Admin,
) -> Result<impl IntoResponse, ApiError> {
    app.broker.delete_session(id).await?;
    app.session_ended(id).await;
    // The session's data is gone, so is its replay.
    match crate::recording::delete(&app.media, id).await {
        Ok(0) => {}
        Ok(_) => crate::metrics::recordings_removed("session_deleted").increment(1),
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "recording of a deleted session not removed")
        }
    }
    tracing::info!(session = %id, "session deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    Admin(claims): Admin,
    JsonBody(changes): JsonBody<SessionChanges>,
) -> Result<impl IntoResponse, ApiError> {
    let session = change_session(
        &app,
        id,
        &claims,
        Command::UpdateSession {
            changes: Box::new(changes),
        },
    )
    .await?;
    Ok(Json(SessionReply { session }))
}

/// Applies a command that changes the session itself and returns the session as stored.
async fn change_session(
    app: &AppState,
    id: SessionId,
    claims: &Claims,
    command: Command,
) -> Result<Session, ApiError> {
    let ack = app.broker.apply(id, &claims.actor(), command).await?;
    match ack.reply {
        Reply::Session(session) => Ok(session),
        other => Err(ApiError::Internal(format!(
            "a session command replied with {other:?}"
        ))),
    }
}

async fn links(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    _: Admin,
) -> Result<impl IntoResponse, ApiError> {
    let session = find(&app, id).await?;
    let (links, tokens) = links_for(&app, id, session.links_version);
    Ok(Json(Created {
        session,
        links,
        tokens,
    }))
}

async fn join(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Option<JoinRequest>>,
) -> Result<impl IntoResponse, ApiError> {
    if app
        .rate_limits
        .joins
        .check_key(&AddressKey::of(client_ip(
            app.config.limits.trust_forwarded_for,
            peer,
            &headers,
        )))
        .is_err()
    {
        return Err(ApiError::rate_limited(
            "too many joins from this address",
            Duration::from_secs(1),
        ));
    }
    let name = match body.unwrap_or_default().name {
        Some(n) => checked_name(&n).map_err(ApiError::Invalid)?,
        None => None,
    };
    // A name is public with every question: it must not carry a phone number or an ID.
    if let Some(name) = &name
        && let Some(found) = app
            .config
            .screen
            .findings(name, &[])
            .into_iter()
            .find(|f| f.kind.is_personal())
    {
        return Err(ApiError::Invalid(format!(
            "a display name may not hold {}; choose another name",
            found.kind.label()
        )));
    }
    let session = find(&app, id).await?;
    if session.state == SessionState::Ended {
        return Err(ApiError::Gone);
    }
    let (claims, token) = app
        .keys
        .issue(Role::Patient, Some(id), name.clone(), SESSION_TTL);
    Ok((
        StatusCode::CREATED,
        Json(Joined {
            token,
            ice_servers: app.relay.ice_servers(&claims.sub.to_string()),
            patient_id: claims.sub,
            name,
            session: session.public_view(),
        }),
    ))
}

async fn set_state(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    Caller(claims): Caller,
    JsonBody(body): JsonBody<StateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    claims.check_session(id)?;
    let command = Command::SetState { state: body.state };
    let session = change_session(&app, id, &claims, command).await?;
    if session.state == SessionState::Ended {
        app.session_ended(id).await;
    }
    Ok(Json(SessionReply {
        session: session.view_for(claims.role),
    }))
}

async fn qr(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
) -> Result<impl IntoResponse, ApiError> {
    find(&app, id).await?;
    let link = format!("{}/s/{id}", app.public_url);
    let code =
        qrcode::QrCode::new(link.as_bytes()).map_err(|e| ApiError::Internal(format!("qr: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        svg,
    ))
}

/// Who a token belongs to: lets a client tell a bad link from a bad network before connecting.
async fn me(Caller(claims): Caller) -> Json<Me> {
    Json(Me {
        id: claims.sub,
        role: claims.role,
        session: claims.sid,
        name: claims.name,
        expires_at: claims.exp,
    })
}

/// A fresh token for the same holder (same id, role, session and name), so a patient keeps
/// "my questions" past the first token's expiry. Only a token that is still valid (and, for
/// staff, not replaced) can do this, and only up to `--token-max-age-days` after the holder's
/// first token: a token that leaked once does not live for ever.
async fn refresh(
    State(app): State<AppState>,
    Caller(claims): Caller,
) -> Result<Json<Refreshed>, ApiError> {
    let (claims, token) =
        app.keys
            .reissue(&claims, ttl_for(claims.role), app.config.token_max_age)?;
    Ok(Json(Refreshed {
        token,
        expires_at: claims.exp,
    }))
}

async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    match app.broker.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage unreachable"),
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    crate::metrics::count_sessions(&*app.broker).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
