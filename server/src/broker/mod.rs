//! The one way to session state and events. Everything above this trait (the hub, the HTTP
//! handlers) works the same whether state lives in this process or in Redis.

mod memory;
mod redis;

pub use self::redis::{RedisBroker, RedisConfig};
pub use memory::MemoryBroker;

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{Actor, Command, Refusal, Reply};
use crate::model::{Question, QuestionId, Role, Session, SessionId, UserId};
use crate::protocol::Event;

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

/// Who gives the commands the server gives itself (the retention).
pub fn system_actor() -> Actor {
    Actor {
        id: Uuid::nil(),
        role: Role::Admin,
        name: None,
        links_version: 0,
        consented_at: None,
    }
}

/// The error underneath a broker failure, kept for whoever looks deeper (`source()`) whatever the
/// store. An `Arc`, not a `Box`, so that one failed commit can report the same error to every
/// command it carried.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("no such session")]
    NoSession,
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Storage cannot be reached; nothing was changed. The message repeats the cause so that a
    /// log line of this error alone still says what went wrong.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] Cause),
    #[error("internal: {0}")]
    Internal(#[source] Cause),
}

impl BrokerError {
    /// `cause` may be an error or just a message (`&str`, `String`).
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        BrokerError::Unavailable(Arc::from(cause.into()))
    }

    /// `cause` may be an error or just a message (`&str`, `String`).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        BrokerError::Internal(Arc::from(cause.into()))
    }
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

    /// Records whether `node`'s relay has the session's publisher sending now: `Some(url)`, where
    /// other nodes pull it from (a heartbeat while it does: a report expires like a viewer
    /// count), or `None`. Returns the session's origin: the URL of the node whose publisher
    /// started last, if any node has one.
    async fn report_video(
        &self,
        id: SessionId,
        node: Uuid,
        origin: Option<&str>,
    ) -> Result<Option<String>, BrokerError>;

    /// The session's origin (see [`Broker::report_video`]); `None` while nobody publishes.
    async fn video_origin(&self, id: SessionId) -> Result<Option<String>, BrokerError>;

    /// Whether any node's relay has the session's publisher sending now: the one answer to
    /// "is the camera live" that every node gives.
    async fn video_live(&self, id: SessionId) -> Result<bool, BrokerError> {
        Ok(self.video_origin(id).await?.is_some())
    }

    /// Records that `user` agreed to the privacy notice of session `id`. Only the first time
    /// is kept, and returned.
    async fn record_consent(
        &self,
        id: SessionId,
        user: UserId,
        at: OffsetDateTime,
    ) -> Result<OffsetDateTime, BrokerError>;

    /// When `user` agreed to the privacy notice of session `id`, if they did.
    async fn consent(
        &self,
        id: SessionId,
        user: UserId,
    ) -> Result<Option<OffsetDateTime>, BrokerError>;

    /// The retention of an ended session: applies [`Command::Scrub`], then forgets the consents
    /// and the event log (whose staff events hold what the scrub removed). Clients resuming
    /// afterwards get a snapshot.
    async fn scrub(&self, id: SessionId) -> Result<(), BrokerError>;

    /// Removes a session and everything of it.
    async fn delete_session(&self, id: SessionId) -> Result<(), BrokerError>;

    /// Whether storage answers (for `/readyz`).
    async fn ping(&self) -> Result<(), BrokerError>;
}

/// A poisoned lock means a panic elsewhere already; the data behind every broker lock is still
/// consistent because every change is made in one step after all checks.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
