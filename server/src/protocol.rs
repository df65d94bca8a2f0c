//! Every message of the WebSocket protocol, one enum per direction, and the error and close
//! codes. `docs/protocol.md` describes the same things for people; keep the two together.

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::{Audience, Command, EventBody};
use crate::model::{Question, QuestionId, Role, Session, SessionState, UserId};
use crate::screen::Finding;

/// Largest frame read at all; bigger frames close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Largest message the server will parse; bigger ones get a `too_large` error.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest request id echoed back.
pub const MAX_REQ_CHARS: usize = 64;

/// Client → server: an optional request id, echoed in the reply, and what is asked. On the
/// wire it is one flat object: `{"type":"ask","req":"r1","text":"…"}`; a field the request does
/// not have is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMsg {
    pub req: Option<String>,
    pub request: Request,
}

/// What a client message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A change to the session, with the fields of [`Command`]'s variant.
    Command(Command),
    /// `{"type":"ping"}`: answered by `pong`, changes nothing.
    Ping,
    /// `{"type":"consent"}`: a patient agrees to the privacy notice; answered by an `ack` with
    /// `consented_at`.
    Consent,
    /// `{"type":"screen","text":"…"}`: what the screen finds in a text not yet sent; answered
    /// by `screened`, changes nothing.
    Screen { text: String },
}

impl ClientMsg {
    pub fn command(req: impl Into<String>, command: Command) -> ClientMsg {
        ClientMsg {
            req: Some(req.into()),
            request: Request::Command(command),
        }
    }

    pub fn ping(req: impl Into<String>) -> ClientMsg {
        ClientMsg {
            req: Some(req.into()),
            request: Request::Ping,
        }
    }
}

impl<'de> Deserialize<'de> for ClientMsg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_json::Value;
        let mut fields = serde_json::Map::deserialize(d)?;
        let req = match fields.remove("req") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(D::Error::custom("req must be a string")),
        };
        let kind = fields
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let request = match kind {
            "ping" | "consent" => {
                if let Some(field) = fields.keys().find(|k| *k != "type") {
                    return Err(D::Error::custom(format!(
                        "unknown field `{field}`: {kind} has none"
                    )));
                }
                if kind == "ping" {
                    Request::Ping
                } else {
                    Request::Consent
                }
            }
            "screen" => {
                if let Some(field) = fields.keys().find(|k| *k != "type" && *k != "text") {
                    return Err(D::Error::custom(format!(
                        "unknown field `{field}`: screen has only text"
                    )));
                }
                match fields.remove("text") {
                    Some(Value::String(text)) => Request::Screen { text },
                    _ => return Err(D::Error::custom("screen needs a text (a string)")),
                }
            }
            _ => Request::Command(
                Command::deserialize(Value::Object(fields)).map_err(D::Error::custom)?,
            ),
        };
        Ok(ClientMsg { req, request })
    }
}

impl Serialize for ClientMsg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        use serde_json::Value;
        let mut fields = match &self.request {
            Request::Ping => serde_json::Map::from_iter([("type".to_owned(), "ping".into())]),
            Request::Consent => serde_json::Map::from_iter([("type".to_owned(), "consent".into())]),
            Request::Screen { text } => serde_json::Map::from_iter([
                ("type".to_owned(), "screen".into()),
                ("text".to_owned(), text.clone().into()),
            ]),
            Request::Command(command) => match serde_json::to_value(command) {
                Ok(Value::Object(fields)) => fields,
                Ok(_) => return Err(S::Error::custom("a command is an object")),
                Err(e) => return Err(S::Error::custom(e)),
            },
        };
        if let Some(req) = &self.req {
            fields.insert("req".into(), req.clone().into());
        }
        fields.serialize(s)
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
    /// When this patient agreed to the privacy notice; they ask only after that.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub consented_at: Option<time::OffsetDateTime>,
    /// A moderator muted this patient: their questions are refused.
    #[serde(default)]
    pub muted: bool,
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
    Snapshot(Snapshot),
    SnapshotPart(SnapshotPart),
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
    Ack(Ack),
    Error(ErrorMsg),
    Pong {
        req: Option<String>,
    },
    /// The answer to `screen`: what the text holds, and how it would be shown. Nothing stored.
    Screened {
        req: Option<String>,
        findings: Vec<Finding>,
        redacted: String,
    },
}

/// Everything one client may see of a session, at `seq`: the first message of a connection
/// without `since` (or whose `since` is too old), and after a lag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub session: Session,
    pub you: You,
    pub questions: Vec<Question>,
    pub my_votes: Vec<QuestionId>,
    pub viewers: u64,
    #[serde(default)]
    pub video: VideoState,
    /// `true`: `snapshot_part` messages follow, the last with `more: false`, before any other
    /// message; the view is complete only then. A large session is sent in parts so that no
    /// single frame is larger than a socket's write buffer (see `crate::snapshot`).
    #[serde(default)]
    pub more: bool,
}

/// The rest of a snapshot: more questions (in queue order, after those already sent) and more
/// of `my_votes`, at the snapshot's `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPart {
    pub seq: u64,
    pub questions: Vec<Question>,
    pub my_votes: Vec<QuestionId>,
    /// `false` on the last part.
    pub more: bool,
}

impl Snapshot {
    /// Adds a part to this snapshot; `more` then says whether another part is still due.
    pub fn absorb(&mut self, part: SnapshotPart) {
        self.questions.extend(part.questions);
        self.my_votes.extend(part.my_votes);
        self.more = part.more;
    }
}

/// A request was stored; `seq` is the last event it produced (or the head, for votes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub req: Option<String>,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<Question>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// The answer to `consent`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub consented_at: Option<time::OffsetDateTime>,
}

/// A request was refused (or, for `unavailable`, not acknowledged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMsg {
    pub req: Option<String>,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
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
    /// Whether this is an event that ended its session: a `session` frame whose state is
    /// `ended`. Only `session` frames (rare: state changes and edits) are parsed.
    pub fn ends_session(&self) -> bool {
        #[derive(Deserialize)]
        struct Frame {
            session: State,
        }
        #[derive(Deserialize)]
        struct State {
            state: SessionState,
        }
        let text = self.frame.as_str();
        text.starts_with(r#"{"type":"session","#)
            && serde_json::from_str::<Frame>(text)
                .is_ok_and(|f| f.session.state == SessionState::Ended)
    }

    pub fn encode(seq: u64, audience: Audience, body: EventBody) -> Event {
        // The one place where an event's audience decides what of it is shown.
        let msg = match body {
            EventBody::Session(session) => ServerMsg::Session {
                seq,
                session: match audience {
                    Audience::Staff { .. } => session.staff_view(),
                    Audience::Public | Audience::Others { .. } => session.public_view(),
                },
            },
            EventBody::Question(question) => ServerMsg::Question {
                seq,
                question: match audience {
                    Audience::Public | Audience::Others { .. } => question.public_view(),
                    // The author of a question is in its staff audience too; they get the
                    // author's view, which the socket makes (`Question::view_for`) only for
                    // snapshots and acks: an event is encoded once for all its readers, so the
                    // author's copy here is the staff one (see docs/protocol.md, `similar`).
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
    /// HTTP only: on the socket an expired token closes it with 4001.
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    SessionEnded,
    RateLimited,
    /// An `ask` before `consent`.
    ConsentRequired,
    /// An `ask` from a patient a moderator muted.
    Muted,
    Unavailable,
    Internal,
    /// HTTP only (library uploads): the finished upload is not an acceptable video; the
    /// error body's `reason` says why (see `oncolive_media::validate::Refusal::code`).
    VideoRefused,
    /// HTTP only: a body of the wrong `Content-Type` (a tus `PATCH` not
    /// `application/offset+octet-stream`).
    UnsupportedMediaType,
    /// HTTP only: a tus request without `Tus-Resumable: 1.0.0`.
    UnsupportedVersion,
    /// HTTP only: a `Range` outside the object.
    RangeNotSatisfiable,
}

/// The WebSocket subprotocol of the hub. A client offers it together with
/// [`BEARER_PROTOCOL_PREFIX`]`<token>` in `Sec-WebSocket-Protocol`; the server answers with it.
pub const SUBPROTOCOL: &str = "oncolive.v1";
/// The offered subprotocol that carries the token: `bearer.` followed by the token.
pub const BEARER_PROTOCOL_PREFIX: &str = "bearer.";

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
    /// The host replaced the expert and moderator links: do not reconnect with this token.
    Revoked = 4003,
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
            CloseCode::Revoked => "link replaced by the host",
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
            msg,
            ClientMsg::command(
                "r4",
                Command::Approve {
                    question: 7,
                    text: Some("x".into()),
                    original: false,
                }
            )
        );
        let round: ClientMsg = serde_json::from_value(serde_json::to_value(&msg).unwrap()).unwrap();
        assert_eq!(round, msg);
        let ping: ClientMsg = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(ping.request, Request::Ping);
        for bad in [
            r#"{"type":"fly"}"#,
            r#"{"type":"vote","question":"x"}"#,
            r#"{"type":"vote","question":1,"extra":true}"#,
            r#"{"type":"ping","extra":true}"#,
            r#"{"type":"ask","req":5,"text":"x"}"#,
            r#"{"type":"update_session","changes":{}}"#,
            r#"[1,2]"#,
        ] {
            assert!(serde_json::from_str::<ClientMsg>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_session_frame_in_state_ended_ends_the_session() {
        let event = |frame: &str| Event {
            seq: 1,
            audience: Audience::Public,
            frame: Utf8Bytes::from(frame.to_owned()),
        };
        let ended = r#"{"type":"session","seq":9,"session":{"title":"\"state\":\"live\"","state":"ended"}}"#;
        assert!(event(ended).ends_session());
        for other in [
            r#"{"type":"session","seq":9,"session":{"title":"\"state\":\"ended\"","state":"live"}}"#,
            r#"{"type":"question","seq":9,"question":{"text":"\"state\":\"ended\"","state":"ended"}}"#,
            r#"{"type":"session","seq":9}"#,
        ] {
            assert!(!event(other).ends_session(), "{other}");
        }
    }

    #[test]
    fn server_messages_carry_their_type_tag() {
        let v = serde_json::to_value(ServerMsg::Viewers { seq: 3, count: 9 }).unwrap();
        assert_eq!(v, serde_json::json!({"type":"viewers","seq":3,"count":9}));
    }
}
