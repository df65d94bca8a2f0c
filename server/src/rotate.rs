//! Replacing a session's expert and moderator links, for when one has leaked: the session's
//! `links_version` grows (a domain command, so every node and both brokers agree), tokens of
//! the old links are refused at once over HTTP and WHIP/WHEP, and open staff sockets holding
//! one are closed with 4003 when the session event reaches them.

use axum::Json;
use axum::extract::{Path, State};

use crate::AppState;
use crate::api::links_for;
use crate::api_types::Created;
use crate::domain::{Command, Reply};
use crate::error::ApiError;
use crate::extract::Admin;
use crate::model::SessionId;

/// `POST /api/sessions/{id}/links/rotate` (admin): the session and its new links.
pub async fn rotate(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    Admin(claims): Admin,
) -> Result<Json<Created>, ApiError> {
    let ack = app
        .broker
        .apply(id, &claims.actor(), Command::RotateStaffLinks)
        .await?;
    let Reply::Session(session) = ack.reply else {
        return Err(ApiError::Internal(format!(
            "replacing links replied with {:?}",
            ack.reply
        )));
    };
    tracing::info!(session = %id, links_version = session.links_version, "staff links replaced");
    let (links, tokens) = links_for(&app, id, session.links_version);
    Ok(Json(Created {
        session,
        links,
        tokens,
    }))
}
