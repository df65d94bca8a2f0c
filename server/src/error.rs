//! The one vocabulary of errors. Every refusal, over HTTP or on the socket, is an [`ApiError`]
//! first; it becomes an HTTP response (status + `{"error":{"code","message"}}`) or a socket
//! `error` message with the same [`ErrorCode`] and message. The table is in `docs/protocol.md`.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::AuthError;
use crate::broker::BrokerError;
use crate::domain::Refusal;
use crate::protocol::{ErrorCode, ErrorMsg, ServerMsg};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not a well-formed request: not JSON, an unknown type or field, a missing field.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but a value is out of range (empty or over-long text, …).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the session has ended")]
    Gone,
    /// A patient who has not agreed to the privacy notice asked (403).
    #[error("{0}")]
    ConsentRequired(String),
    /// A muted patient asked (403).
    #[error("{0}")]
    Muted(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    /// Storage could not be reached: the change may or may not have been stored.
    #[error("{0}")]
    Unavailable(String),
    /// A finished upload that is not an acceptable video (422): `reason` is the stable code.
    #[error("{message}")]
    VideoRefused {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A tus request of another protocol version (412, with `Tus-Version`).
    #[error("{0}")]
    UnsupportedVersion(String),
    /// A `Range` outside an object of `length` bytes (416, with `Content-Range: bytes */length`).
    #[error("the range is outside the {length} bytes of the file")]
    RangeNotSatisfiable { length: u64 },
    /// A bug or an unexpected failure; the detail is logged, never sent.
    #[error("internal error, nothing was stored")]
    Internal(String),
}

/// What clients are told when storage cannot be reached in time.
const UNAVAILABLE: &str = "temporarily unavailable, try again (not acknowledged: \
                           check your questions before asking again)";

impl ApiError {
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError::RateLimited {
            message: message.into(),
            retry_after,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Invalid(_) => ErrorCode::Invalid,
            ApiError::TooLarge(_) => ErrorCode::TooLarge,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Gone => ErrorCode::SessionEnded,
            ApiError::ConsentRequired(_) => ErrorCode::ConsentRequired,
            ApiError::Muted(_) => ErrorCode::Muted,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::VideoRefused { .. } => ErrorCode::VideoRefused,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ApiError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
        }
    }

    fn log(&self) {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "request failed");
        }
    }

    /// The same refusal as a socket message answering request `req`.
    pub fn into_server_msg(self, req: Option<String>) -> ServerMsg {
        self.log();
        let retry_after_ms = match &self {
            ApiError::RateLimited { retry_after, .. } => Some(retry_after.as_millis() as u64),
            _ => None,
        };
        ServerMsg::Error(ErrorMsg {
            req,
            code: self.code(),
            message: self.to_string(),
            retry_after_ms,
        })
    }
}

impl ErrorCode {
    /// The HTTP status of each code: the one mapping, for both transports.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::Invalid => StatusCode::BAD_REQUEST,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::ConsentRequired | ErrorCode::Muted => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::SessionEnded => StatusCode::GONE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::VideoRefused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedVersion => StatusCode::PRECONDITION_FAILED,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }
}

/// The HTTP error body. Public so that clients (the test kit, the load generator) read it typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// Only with `video_refused`: why (`not_mp4`, `too_long`, …; see docs/protocol.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let code = self.code();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                reason: match &self {
                    ApiError::VideoRefused { reason, .. } => Some((*reason).to_owned()),
                    _ => None,
                },
            },
        };
        let mut response = (code.status(), Json(body)).into_response();
        if code == ErrorCode::Unauthorized {
            // RFC 6750 §3, as the relay's WHIP/WHEP answers do.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        match &self {
            ApiError::RangeNotSatisfiable { length } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{length}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::UnsupportedVersion(_) => {
                response.headers_mut().insert(
                    crate::library::tus::TUS_VERSION,
                    HeaderValue::from_static(crate::library::tus::VERSION),
                );
            }
            _ => {}
        }
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(m) => ApiError::Unauthorized(m),
            AuthError::Forbidden(m) => ApiError::Forbidden(m),
            other @ (AuthError::Revoked | AuthError::TooOld { .. }) => {
                ApiError::Unauthorized(other.to_string())
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::SessionEnded => ApiError::Gone,
            revoked @ Refusal::Revoked => ApiError::Unauthorized(revoked.to_string()),
            Refusal::Forbidden(m) => ApiError::Forbidden(m),
            Refusal::Conflict(m) => ApiError::Conflict(m),
            Refusal::Invalid(m) => ApiError::Invalid(m),
            not_found @ Refusal::NotFound(_) => ApiError::NotFound(not_found.to_string()),
            muted @ Refusal::Muted => ApiError::Muted(muted.to_string()),
            consent @ Refusal::ConsentRequired => ApiError::ConsentRequired(consent.to_string()),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NoSession => ApiError::NotFound("no such session".into()),
            BrokerError::Refused(r) => r.into(),
            BrokerError::Unavailable(_) => {
                tracing::warn!(error = %e, "storage unavailable");
                ApiError::Unavailable(UNAVAILABLE.into())
            }
            internal @ BrokerError::Internal(_) => ApiError::Internal(internal.to_string()),
        }
    }
}

impl From<oncolive_media::StoreError> for ApiError {
    fn from(err: oncolive_media::StoreError) -> Self {
        match err {
            oncolive_media::StoreError::NotFound(what) => ApiError::NotFound(what),
            other => {
                tracing::warn!(error = %other, "media store");
                ApiError::Unavailable("the media store cannot be reached".into())
            }
        }
    }
}
