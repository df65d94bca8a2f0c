//! Every message of the WebSocket protocol, one enum per direction, and the error and close
//! codes. `docs/protocol.md` describes the same things for people; keep the two together.

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::{Audience, Command, EventBody, Refusal};
use crate::model::{Question, QuestionId, Role, Session, SessionState, UserId};

/// Largest frame read at all; bigger frames close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Largest message the server will parse; bigger ones get a `too_large` error.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest request id echoed back.
pub const MAX_REQ_CHARS: usize = 64;

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    Ask {
        #[serde(default)]
        req: Option<String>,
        text: String,
    },
    Vote {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
    },
    Unvote {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
    },
    Approve {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
        #[serde(default)]
        text: Option<String>,
    },
    Reject {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
        reason: String,
    },
    Edit {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
        text: String,
    },
    Merge {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
        into: QuestionId,
    },
    Pin {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
        pinned: bool,
    },
    Answering {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
    },
    Answered {
        #[serde(default)]
        req: Option<String>,
        question: QuestionId,
        #[serde(default)]
        answer: Option<String>,
    },
    SetState {
        #[serde(default)]
        req: Option<String>,
        state: SessionState,
    },
    Ping {
        #[serde(default)]
        req: Option<String>,
    },
}

impl ClientMsg {
    /// Splits a message into its request id and the command it carries (`None` for `ping`).
    pub fn into_parts(self) -> (Option<String>, Option<Command>) {
        use ClientMsg as M;
        match self {
            M::Ask { req, text } => (req, Some(Command::Ask { text })),
            M::Vote { req, question } => (req, Some(Command::Vote { question })),
            M::Unvote { req, question } => (req, Some(Command::Unvote { question })),
            M::Approve {
                req,
                question,
                text,
            } => (req, Some(Command::Approve { question, text })),
            M::Reject {
                req,
                question,
                reason,
            } => (req, Some(Command::Reject { question, reason })),
            M::Edit {
                req,
                question,
                text,
            } => (req, Some(Command::Edit { question, text })),
            M::Merge {
                req,
                question,
                into,
            } => (req, Some(Command::Merge { question, into })),
            M::Pin {
                req,
                question,
                pinned,
            } => (req, Some(Command::Pin { question, pinned })),
            M::Answering { req, question } => (req, Some(Command::Answering { question })),
            M::Answered {
                req,
                question,
                answer,
            } => (req, Some(Command::Answered { question, answer })),
            M::SetState { req, state } => (req, Some(Command::SetState { state })),
            M::Ping { req } => (req, None),
        }
    }
}

/// Only the request id, read from a message that failed to parse, so the error can echo it.
#[derive(Deserialize)]
pub struct ReqOnly {
    #[serde(default)]
    pub req: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct You {
    pub id: UserId,
    pub role: Role,
    pub name: Option<String>,
}

/// Whether the relay is receiving the expert's camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoState {
    Live,
    #[default]
    Waiting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteCount {
    pub id: QuestionId,
    pub votes: u64,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Snapshot {
        seq: u64,
        session: Session,
        you: You,
        questions: Vec<Question>,
        my_votes: Vec<QuestionId>,
        viewers: u64,
        #[serde(default)]
        video: VideoState,
    },
    Resumed {
        since: u64,
        seq: u64,
    },
    Session {
        seq: u64,
        session: Session,
    },
    Question {
        seq: u64,
        question: Question,
    },
    QuestionRemoved {
        seq: u64,
        id: QuestionId,
    },
    Votes {
        seq: u64,
        votes: Vec<VoteCount>,
    },
    Viewers {
        seq: u64,
        count: u64,
    },
    Video {
        seq: u64,
        state: VideoState,
    },
    Ack {
        req: Option<String>,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question: Option<Question>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voted: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<Session>,
    },
    Error {
        req: Option<String>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Pong {
        req: Option<String>,
    },
}

impl ServerMsg {
    /// The sequence number of a logged event, if this is one.
    pub fn event_seq(&self) -> Option<u64> {
        match self {
            ServerMsg::Session { seq, .. }
            | ServerMsg::Question { seq, .. }
            | ServerMsg::QuestionRemoved { seq, .. }
            | ServerMsg::Votes { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    pub fn error(req: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            req,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// One entry of a session's ordered log, encoded once and shared by every socket that gets it.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub audience: Audience,
    /// The JSON text frame, `seq` included. `Utf8Bytes` so sockets need not re-check the UTF-8.
    pub frame: Utf8Bytes,
}

impl Event {
    pub fn encode(seq: u64, audience: Audience, body: EventBody) -> Event {
        let msg = match body {
            EventBody::Session(session) => ServerMsg::Session { seq, session },
            EventBody::Question(question) => ServerMsg::Question {
                seq,
                question: match audience {
                    Audience::Public => question.public_view(),
                    Audience::Staff { .. } => question,
                },
            },
            EventBody::QuestionRemoved(id) => ServerMsg::QuestionRemoved { seq, id },
            EventBody::Votes(counts) => ServerMsg::Votes {
                seq,
                votes: counts
                    .into_iter()
                    .map(|(id, votes)| VoteCount { id, votes })
                    .collect(),
            },
        };
        Event {
            seq,
            audience,
            frame: encode(&msg).into(),
        }
    }
}

/// Serialises a server message; our types always serialise, so a failure is a bug worth a loud log.
pub fn encode(msg: &ServerMsg) -> String {
    serde_json::to_string(msg).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode a server message");
        r#"{"type":"error","req":null,"code":"internal","message":"encoding failed"}"#.to_owned()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Invalid,
    TooLarge,
    Forbidden,
    NotFound,
    Conflict,
    SessionEnded,
    RateLimited,
    Unavailable,
    Internal,
}

impl From<&Refusal> for ErrorCode {
    fn from(r: &Refusal) -> Self {
        match r {
            Refusal::Forbidden(_) => ErrorCode::Forbidden,
            Refusal::Invalid(_) => ErrorCode::Invalid,
            Refusal::NotFound(_) => ErrorCode::NotFound,
            Refusal::Conflict(_) => ErrorCode::Conflict,
            Refusal::SessionEnded => ErrorCode::SessionEnded,
        }
    }
}

/// WebSocket close codes. 4000–4099: the client may reconnect (after what the variant says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    Normal = 1000,
    GoingAway = 1001,
    TooBig = 1009,
    Internal = 1011,
    TooSlow = 4000,
    TokenExpired = 4001,
    Flood = 4008,
    Idle = 4009,
}

impl CloseCode {
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "bye",
            CloseCode::GoingAway => "server shutting down, reconnect with since",
            CloseCode::TooBig => "frame too large",
            CloseCode::Internal => "internal error, reconnect with since",
            CloseCode::TooSlow => "too slow: reconnect with since",
            CloseCode::TokenExpired => "token expired",
            CloseCode::Flood => "too many messages",
            CloseCode::Idle => "no pong",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_as_documented() {
        let msg: ClientMsg =
            serde_json::from_str(r#"{"type":"approve","req":"r4","question":7,"text":"x"}"#)
                .unwrap();
        assert_eq!(
            msg.into_parts(),
            (
                Some("r4".into()),
                Some(Command::Approve {
                    question: 7,
                    text: Some("x".into())
                })
            )
        );
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"fly"}"#).is_err());
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"vote","question":"x"}"#).is_err());
    }

    #[test]
    fn server_messages_carry_their_type_tag() {
        let v = serde_json::to_value(ServerMsg::Viewers { seq: 3, count: 9 }).unwrap();
        assert_eq!(v, serde_json::json!({"type":"viewers","seq":3,"count":9}));
    }
}
