//! The one way to session state and events. Everything above this trait (the hub, the HTTP
//! handlers) works the same whether state lives in this process or in Redis.

mod memory;
mod redis;

pub use self::redis::{RedisBroker, RedisConfig};
pub use memory::MemoryBroker;

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{Actor, Audience, Command, EventBody, Refusal, Reply};
use crate::model::{Question, QuestionId, Role, Session, SessionId, UserId};
use crate::protocol::{ServerMsg, VoteCount};

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

/// A change that was stored.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The last event the change produced, or the head when it produced none (votes).
    pub seq: u64,
    pub reply: Reply,
}

/// What one client may see of a session, at `seq`.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub seq: u64,
    pub session: Session,
    pub questions: Vec<Question>,
    pub my_votes: Vec<QuestionId>,
}

pub enum Replay {
    /// Every event after the requested one, in order, up to `head`.
    Events { events: Vec<Arc<Event>>, head: u64 },
    /// The history no longer reaches back that far (or `since` is ahead of the head).
    TooOld,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no such session")]
    NoSession,
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Storage cannot be reached; nothing was changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    async fn create_session(&self, session: Session) -> Result<(), BrokerError>;
    async fn session(&self, id: SessionId) -> Result<Option<Session>, BrokerError>;
    async fn sessions(&self) -> Result<Vec<Session>, BrokerError>;

    /// Applies a command atomically and appends its events to the session's log. Returns only
    /// after both are stored.
    async fn apply(
        &self,
        id: SessionId,
        actor: &Actor,
        command: Command,
    ) -> Result<Ack, BrokerError>;

    /// Appends one `votes` event with the counts changed since the last flush, if any. Safe to
    /// call from several nodes at once: each change is flushed once.
    async fn flush_votes(&self, id: SessionId) -> Result<(), BrokerError>;

    async fn view(
        &self,
        id: SessionId,
        role: Role,
        viewer: UserId,
    ) -> Result<SessionView, BrokerError>;

    /// The events after `since`, for a client resuming.
    async fn replay(&self, id: SessionId, since: u64) -> Result<Replay, BrokerError>;

    /// Live events of a session, in log order. A receiver that lags catches up with `replay`.
    async fn subscribe(
        &self,
        id: SessionId,
    ) -> Result<broadcast::Receiver<Arc<Event>>, BrokerError>;

    /// Records how many clients `node` has in a session and returns the total over live nodes.
    async fn report_viewers(
        &self,
        id: SessionId,
        node: Uuid,
        count: u64,
    ) -> Result<u64, BrokerError>;

    /// Whether storage answers (for `/readyz`).
    async fn ping(&self) -> Result<(), BrokerError>;
}
