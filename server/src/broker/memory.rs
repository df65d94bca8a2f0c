//! The in-memory broker: the default, so one process runs everything with no other service.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Ack, Broker, BrokerError, Replay, SessionView, lock};
use crate::domain::{Actor, Command, QuestionCaps, SessionData};
use crate::model::{Role, Session, SessionId, UserId};
use crate::protocol::Event;

/// A node that has not reported its viewers for this long is no longer counted.
const PRESENCE_TTL: Duration = Duration::from_secs(10);
/// Live events buffered per session for subscribers; a subscriber further behind replays.
const LIVE_CAPACITY: usize = 4096;

pub struct MemoryBroker {
    /// The map lock is held just long enough to clone an `Arc`, add a session, or drop the
    /// ended ones past their retention.
    sessions: RwLock<HashMap<SessionId, Arc<MemSession>>>,
    history: usize,
    /// How long an ended session is kept (as in Redis), so a long-running node does not grow.
    retention: Duration,
    presence: Mutex<HashMap<(SessionId, Uuid), (u64, Instant)>>,
    caps: QuestionCaps,
}

struct MemSession {
    /// A std mutex: every critical section is short and never awaits, and holding it while
    /// broadcasting is what keeps the log and the live stream in one order.
    state: Mutex<MemState>,
    live: broadcast::Sender<Arc<Event>>,
}

struct MemState {
    data: SessionData,
    head: u64,
    log: VecDeque<Arc<Event>>,
}

impl MemState {
    fn append(
        &mut self,
        events: Vec<Arc<Event>>,
        history: usize,
        live: &broadcast::Sender<Arc<Event>>,
    ) {
        for event in events {
            self.head = event.seq;
            if self.log.len() == history {
                self.log.pop_front();
            }
            self.log.push_back(event.clone());
            // No receivers is fine: nobody is connected to this session on this node.
            let _ = live.send(event);
        }
    }
}

impl MemoryBroker {
    /// `history`: how many events per session are kept for clients resuming; `retention`: how
    /// long an ended session stays readable.
    pub fn new(history: usize, retention: Duration) -> Self {
        MemoryBroker {
            sessions: RwLock::default(),
            history: history.max(1),
            retention,
            presence: Mutex::default(),
            caps: QuestionCaps::default(),
        }
    }

    /// The same broker with other question caps for its sessions.
    pub fn with_caps(self, caps: QuestionCaps) -> Self {
        MemoryBroker { caps, ..self }
    }

    /// Forgets sessions that ended longer ago than the retention.
    fn expire(&self) {
        let now = OffsetDateTime::now_utc();
        let expired = |s: &MemSession| {
            lock(&s.state)
                .data
                .session
                .ended_at
                .is_some_and(|ended| now - ended >= self.retention)
        };
        let any = read(&self.sessions).values().any(|s| expired(s));
        if any {
            let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|_, s| !expired(s));
        }
    }

    fn get(&self, id: SessionId) -> Result<Arc<MemSession>, BrokerError> {
        read(&self.sessions)
            .get(&id)
            .cloned()
            .ok_or(BrokerError::NoSession)
    }
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn create_session(&self, session: Session) -> Result<(), BrokerError> {
        self.expire();
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let entry = Arc::new(MemSession {
            state: Mutex::new(MemState {
                data: SessionData::new(session.clone()).with_caps(self.caps),
                head: 0,
                log: VecDeque::new(),
            }),
            live,
        });
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if sessions.contains_key(&session.id) {
            return Err(BrokerError::internal("session id already exists"));
        }
        sessions.insert(session.id, entry);
        Ok(())
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, BrokerError> {
        match self.get(id) {
            Ok(s) => Ok(Some(lock(&s.state).data.session.clone())),
            Err(BrokerError::NoSession) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn sessions(&self) -> Result<Vec<Session>, BrokerError> {
        self.expire();
        let all: Vec<_> = read(&self.sessions).values().cloned().collect();
        Ok(all
            .iter()
            .map(|s| lock(&s.state).data.session.clone())
            .collect())
    }

    async fn apply(
        &self,
        id: SessionId,
        actor: &Actor,
        command: Command,
    ) -> Result<Ack, BrokerError> {
        let session = self.get(id)?;
        let mut state = lock(&session.state);
        let applied = state
            .data
            .apply(actor, command, OffsetDateTime::now_utc())?;
        let mut seq = state.head;
        let events = applied
            .events
            .into_iter()
            .map(|(audience, body)| {
                seq += 1;
                Arc::new(Event::encode(seq, audience, body))
            })
            .collect();
        state.append(events, self.history, &session.live);
        Ok(Ack {
            seq: state.head,
            reply: applied.reply,
        })
    }

    async fn flush_votes(&self, id: SessionId) -> Result<(), BrokerError> {
        let session = self.get(id)?;
        let mut state = lock(&session.state);
        if let Some((audience, body)) = state.data.take_vote_counts() {
            let event = Arc::new(Event::encode(state.head + 1, audience, body));
            state.append(vec![event], self.history, &session.live);
        }
        Ok(())
    }

    async fn view(
        &self,
        id: SessionId,
        role: Role,
        viewer: UserId,
    ) -> Result<SessionView, BrokerError> {
        let session = self.get(id)?;
        let state = lock(&session.state);
        let (questions, my_votes) = state.data.visible_to(role, viewer);
        Ok(SessionView {
            seq: state.head,
            session: state.data.session.clone(),
            questions,
            my_votes,
        })
    }

    async fn replay(&self, id: SessionId, since: u64) -> Result<Replay, BrokerError> {
        let session = self.get(id)?;
        let state = lock(&session.state);
        let oldest = state.log.front().map_or(state.head + 1, |e| e.seq);
        // Resuming from `since` needs every event from since+1 on.
        if since > state.head || since + 1 < oldest {
            return Ok(Replay::TooOld);
        }
        let skip = (since + 1 - oldest) as usize;
        Ok(Replay::Events {
            events: state.log.iter().skip(skip).cloned().collect(),
            head: state.head,
        })
    }

    async fn subscribe(
        &self,
        id: SessionId,
    ) -> Result<broadcast::Receiver<Arc<Event>>, BrokerError> {
        Ok(self.get(id)?.live.subscribe())
    }

    async fn report_viewers(
        &self,
        id: SessionId,
        node: Uuid,
        count: u64,
    ) -> Result<u64, BrokerError> {
        let now = Instant::now();
        let mut presence = lock(&self.presence);
        presence.insert((id, node), (count, now));
        presence.retain(|_, (_, at)| now.duration_since(*at) < PRESENCE_TTL);
        Ok(presence
            .iter()
            .filter(|((sid, _), _)| *sid == id)
            .map(|(_, (n, _))| n)
            .sum())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Actor;
    use crate::model::{Moderation, NewSession, SessionState};

    #[tokio::test]
    async fn ended_sessions_are_forgotten_after_the_retention() {
        let broker = MemoryBroker::new(10, Duration::ZERO);
        let now = OffsetDateTime::now_utc();
        let new = |title: &str| NewSession {
            title: title.into(),
            topic: String::new(),
            expert_name: "e".into(),
            scheduled_start: now,
            moderation: Moderation::Pre,
        };
        let ended = new("ended").into_session(Uuid::now_v7(), now);
        let kept = new("kept").into_session(Uuid::now_v7(), now);
        broker.create_session(ended.clone()).await.unwrap();
        broker.create_session(kept.clone()).await.unwrap();
        let admin = Actor {
            id: Uuid::now_v7(),
            role: Role::Admin,
            name: None,
            links_version: 0,
        };
        let end = Command::SetState {
            state: SessionState::Ended,
        };
        broker.apply(ended.id, &admin, end).await.unwrap();
        let left: Vec<_> = broker
            .sessions()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(left, vec![kept.id]);
        assert!(broker.session(ended.id).await.unwrap().is_none());
    }
}
