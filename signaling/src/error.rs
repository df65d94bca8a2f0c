//! Errors at the crate boundary (`SignalingError`) and at the HTTP edge (`ApiError`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;

/// Failures of the relay itself (not of a client's request).
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("invalid relay configuration: {0}")]
    Config(String),
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("ICE gathering did not complete in time")]
    GatheringTimeout,
    #[error("the relay is shutting down")]
    ShuttingDown,
}

/// What a WHIP/WHEP request gets back when it fails: a status and
/// `{"error":{"code":"...","message":"..."}}`. Internal causes are logged, not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A malformed request: (error code, reason for the client).
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("content type must be {0}")]
    UnsupportedMediaType(&'static str),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("no such resource")]
    ResourceNotFound,
    #[error("the session has ended")]
    SessionEnded,
    #[error("the If-Match ETag is not the resource's current ICE session")]
    PreconditionFailed,
    /// A trickle fragment for an ICE session an ICE restart has replaced.
    #[error(
        "the fragment's a=ice-ufrag is not the current ICE session's; send the candidates of the current one"
    )]
    StaleIceSession,
    #[error("the relay is shutting down")]
    Unavailable,
    /// A viewer budget is spent (429) or the session is full here (503).
    #[error("{message}")]
    Limit {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// ICE gathered no candidate (no free UDP port, no usable interface):
    /// answering would give the client a connection that can never carry media.
    #[error(
        "the relay has no free media port or usable network interface right now; try again later"
    )]
    NoCandidates,
    /// A client candidate the relay will not send to (loopback, link-local, metadata...).
    #[error("{0}")]
    ForbiddenCandidate(String),
    /// An edge could not pull the session from its origin (never a client's answer: pulls run
    /// on their own; logged).
    #[error("pulling from the origin: {0}")]
    OriginUnavailable(String),
    #[error("internal error")]
    Internal(#[source] SignalingError),
}

impl From<SignalingError> for ApiError {
    fn from(err: SignalingError) -> Self {
        match err {
            SignalingError::ShuttingDown => ApiError::Unavailable,
            other => ApiError::Internal(other),
        }
    }
}

impl ApiError {
    pub(crate) fn bad_sdp(reason: impl Into<String>) -> Self {
        ApiError::BadRequest("invalid_sdp", reason.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(code, _) => (StatusCode::BAD_REQUEST, code),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Auth(AuthError::Unauthorized(_)) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            ApiError::Auth(AuthError::Forbidden(_)) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::Auth(AuthError::NotFound(_)) => (StatusCode::NOT_FOUND, "session_not_found"),
            ApiError::Auth(AuthError::Gone(_)) | ApiError::SessionEnded => {
                (StatusCode::GONE, "session_ended")
            }
            ApiError::ResourceNotFound => (StatusCode::NOT_FOUND, "resource_not_found"),
            ApiError::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "etag_mismatch"),
            ApiError::StaleIceSession => (StatusCode::CONFLICT, "stale_ice_session"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ApiError::Limit { status, code, .. } => (*status, code),
            ApiError::NoCandidates => (StatusCode::SERVICE_UNAVAILABLE, "no_ice_candidates"),
            ApiError::ForbiddenCandidate(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "forbidden_candidate")
            }
            ApiError::Auth(AuthError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::OriginUnavailable(_) => (StatusCode::BAD_GATEWAY, "origin_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "WHIP/WHEP request failed");
        } else {
            tracing::debug!(%status, code, error = %self, "WHIP/WHEP request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::NoCandidates) {
            // Ports come back as viewers leave; a client may retry soon.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
