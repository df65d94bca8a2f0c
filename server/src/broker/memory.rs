//! The in-memory broker: the default, so one process runs everything with no other service.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Ack, Broker, BrokerError, Replay, SessionView, lock, system_actor};
use crate::domain::{Actor, Command, Rules, SessionData};
use crate::model::{Role, Session, SessionId, UserId};
use crate::protocol::Event;

/// A node that has not reported its viewers for this long is no longer counted.
const PRESENCE_TTL: Duration = Duration::from_secs(10);

/// One node's report that its relay has a session's publisher sending.
struct VideoReport {
    /// Where other nodes pull the session from.
    url: String,
    /// Since when this node has had it (the newest is the origin).
    since: Instant,
    /// The last report (a heartbeat).
    at: Instant,
}
/// Live events buffered per session for subscribers; a subscriber further behind replays.
const LIVE_CAPACITY: usize = 4096;

pub struct MemoryBroker {
    /// The map lock is held just long enough to clone an `Arc`, add or remove a session.
    sessions: RwLock<HashMap<SessionId, Arc<MemSession>>>,
    history: usize,
    presence: Mutex<HashMap<(SessionId, Uuid), (u64, Instant)>>,
    /// Nodes whose relay has a session's publisher sending.
    video: Mutex<HashMap<(SessionId, Uuid), VideoReport>>,
    rules: Rules,
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
    /// When each patient agreed to the privacy notice.
    consents: HashMap<UserId, OffsetDateTime>,
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
    /// `history`: how many events per session are kept for clients resuming.
    pub fn new(history: usize) -> Self {
        MemoryBroker {
            sessions: RwLock::default(),
            history: history.max(1),
            presence: Mutex::default(),
            video: Mutex::default(),
            rules: Rules::default(),
        }
    }

    /// The same broker with other rules (caps, screen) for its sessions.
    pub fn with_rules(self, rules: Rules) -> Self {
        MemoryBroker { rules, ..self }
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
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let entry = Arc::new(MemSession {
            state: Mutex::new(MemState {
                data: SessionData::new(session.clone()).with_rules(self.rules.clone()),
                head: 0,
                log: VecDeque::new(),
                consents: HashMap::new(),
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

    async fn report_video(
        &self,
        id: SessionId,
        node: Uuid,
        origin: Option<&str>,
    ) -> Result<Option<String>, BrokerError> {
        {
            let now = Instant::now();
            let mut video = lock(&self.video);
            match origin {
                Some(url) => {
                    let since = match video.get(&(id, node)) {
                        Some(old)
                            if old.url == url && now.duration_since(old.at) < PRESENCE_TTL =>
                        {
                            old.since
                        }
                        _ => now,
                    };
                    video.insert(
                        (id, node),
                        VideoReport {
                            url: url.to_owned(),
                            since,
                            at: now,
                        },
                    );
                }
                None => {
                    video.remove(&(id, node));
                }
            }
        }
        self.video_origin(id).await
    }

    async fn video_origin(&self, id: SessionId) -> Result<Option<String>, BrokerError> {
        let now = Instant::now();
        let mut video = lock(&self.video);
        video.retain(|_, r| now.duration_since(r.at) < PRESENCE_TTL);
        Ok(video
            .iter()
            .filter(|((sid, _), _)| *sid == id)
            .max_by_key(|(_, r)| r.since)
            .map(|(_, r)| r.url.clone()))
    }

    async fn record_consent(
        &self,
        id: SessionId,
        user: UserId,
        at: OffsetDateTime,
    ) -> Result<OffsetDateTime, BrokerError> {
        let session = self.get(id)?;
        let mut state = lock(&session.state);
        Ok(*state.consents.entry(user).or_insert(at))
    }

    async fn consent(
        &self,
        id: SessionId,
        user: UserId,
    ) -> Result<Option<OffsetDateTime>, BrokerError> {
        let session = self.get(id)?;
        let state = lock(&session.state);
        Ok(state.consents.get(&user).copied())
    }

    async fn scrub(&self, id: SessionId) -> Result<(), BrokerError> {
        let session = self.get(id)?;
        let mut state = lock(&session.state);
        state
            .data
            .apply(&system_actor(), Command::Scrub, OffsetDateTime::now_utc())?;
        state.consents = HashMap::new();
        // Nothing is broadcast: the log of staff events is what goes; resuming clients get a
        // snapshot of what is left.
        state.log = VecDeque::new();
        state.head += 1;
        Ok(())
    }

    async fn delete_session(&self, id: SessionId) -> Result<(), BrokerError> {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        sessions
            .remove(&id)
            .map(|_| ())
            .ok_or(BrokerError::NoSession)
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Moderation, NewSession, SessionState};

    fn actor(role: Role) -> Actor {
        Actor {
            id: Uuid::now_v7(),
            role,
            name: None,
            links_version: 0,
            consented_at: Some(OffsetDateTime::now_utc()),
        }
    }

    #[tokio::test]
    async fn the_retention_keeps_public_answers_and_forgets_the_rest() {
        let broker = MemoryBroker::new(10);
        let now = OffsetDateTime::now_utc();
        let session = NewSession {
            title: "t".into(),
            topic: String::new(),
            expert_name: "e".into(),
            scheduled_start: now,
            moderation: Moderation::Pre,
            expert_profile: None,
            record: None,
            videos: Vec::new(),
        }
        .into_session(Uuid::now_v7(), now);
        let id = session.id;
        broker.create_session(session).await.unwrap();
        let (patient, moderator, admin) = (
            actor(Role::Patient),
            actor(Role::Moderator),
            actor(Role::Admin),
        );
        broker.record_consent(id, patient.id, now).await.unwrap();
        let ask = |text: &str| Command::Ask { text: text.into() };
        broker.apply(id, &patient, ask("public")).await.unwrap();
        broker
            .apply(id, &patient, ask("13812345678 hidden"))
            .await
            .unwrap();
        let approve = Command::Approve {
            question: 1,
            text: None,
            original: false,
        };
        broker.apply(id, &moderator, approve).await.unwrap();
        assert!(broker.scrub(id).await.is_err(), "only ended sessions");
        let end = Command::SetState {
            state: SessionState::Ended,
        };
        broker.apply(id, &admin, end).await.unwrap();
        broker.scrub(id).await.unwrap();
        let view = broker.view(id, Role::Admin, admin.id).await.unwrap();
        assert_eq!(view.questions.len(), 1);
        assert_eq!(view.questions[0].text, "public");
        assert_eq!(view.questions[0].author_id, None);
        assert!(view.session.scrubbed_at.is_some());
        assert_eq!(broker.consent(id, patient.id).await.unwrap(), None);
        assert!(matches!(
            broker.replay(id, 1).await.unwrap(),
            Replay::TooOld
        ));
        broker.delete_session(id).await.unwrap();
        assert!(broker.session(id).await.unwrap().is_none());
    }
}
