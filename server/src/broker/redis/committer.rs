//! Stores a session's commands in batches: commands that arrive while a commit is in flight
//! join the next one, so one commit (one round trip, one fsync) stores many, and commands from
//! this node never race each other on the version check. Only commands from different nodes do;
//! the loser applies its batch again to fresh state.
//!
//! Between batches the committer keeps each busy session's state ([`Cached`]), at the version
//! it stored, and brings it up to date with `refresh.lua`, which reads only the records changed
//! since (by any node) and the vote counts of the questions the batch names. So a command costs
//! what it changes, not the size of the session; a session is read in full only when it is not
//! cached here (first command, evicted, or after a failed call left its state unknown).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::Store;
use super::codec::{Change, Refreshed};
use super::scripts::Committed;
use crate::broker::{Ack, BrokerError, lock};
use crate::domain::{Actor, Command, SessionData, Touched};
use crate::model::{QuestionId, SessionId};

/// How often a batch is applied again after other nodes changed the session under it.
const MAX_ATTEMPTS: u32 = 50;
/// Most commands stored by one commit.
const MAX_BATCH: usize = 64;
/// Most sessions whose state is kept between batches; a node serves a few live sessions, and a
/// session of 20,000 questions is about 10 MB.
const MAX_CACHED: usize = 32;

pub struct Committer {
    store: Arc<Store>,
    /// Commands waiting to be stored, per session. A session is in the map while a task is
    /// storing its commands. A std mutex: only pushed to and drained, never held across an
    /// await.
    queues: Mutex<HashMap<SessionId, Vec<Pending>>>,
    /// Sessions' state as of their last commit here. A std mutex, never held across an await:
    /// the one task storing a session's queue takes its entry out and puts it back after.
    cache: Mutex<HashMap<SessionId, Cached>>,
    /// Counts uses, to evict the least recently used session.
    clock: std::sync::atomic::AtomicU64,
}

/// A session's state as this node last read or stored it.
struct Cached {
    /// The `version` `data` is at.
    version: u64,
    data: SessionData,
    /// What `data` changed in a commit that was not stored (another node got there first):
    /// read again with what changed since `version`.
    unstored: Touched,
    used: u64,
}

/// A command waiting for its batch.
struct Pending {
    actor: Actor,
    command: Command,
    done: oneshot::Sender<Result<Ack, BrokerError>>,
}

impl Committer {
    pub fn new(store: Arc<Store>) -> Committer {
        Committer {
            store,
            queues: Mutex::default(),
            cache: Mutex::default(),
            clock: Default::default(),
        }
    }

    /// Queues a command and waits until it is stored (or refused).
    /// Drops the cached copy of a session (deleted).
    pub fn forget(&self, id: SessionId) {
        lock(&self.cache).remove(&id);
    }

    pub async fn submit(
        self: &Arc<Self>,
        id: SessionId,
        actor: &Actor,
        command: Command,
    ) -> Result<Ack, BrokerError> {
        let (done, outcome) = oneshot::channel();
        let pending = Pending {
            actor: actor.clone(),
            command,
            done,
        };
        let lead = {
            let mut queues = lock(&self.queues);
            match queues.get_mut(&id) {
                Some(queue) => {
                    queue.push(pending);
                    false
                }
                None => {
                    queues.insert(id, vec![pending]);
                    true
                }
            }
        };
        if lead {
            // A task of its own, so that a caller that goes away cannot strand the others.
            tokio::spawn(self.clone().store_queue(id));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(BrokerError::internal("the command was dropped")))
    }

    /// Stores the session's queued commands, batch after batch, until none is left.
    async fn store_queue(self: Arc<Self>, id: SessionId) {
        loop {
            let batch: Vec<Pending> = {
                let mut queues = lock(&self.queues);
                let Some(queue) = queues.get_mut(&id) else {
                    return;
                };
                if queue.is_empty() {
                    queues.remove(&id);
                    return;
                }
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            match self.store_batch(id, &batch).await {
                Ok(outcomes) => {
                    for (pending, outcome) in batch.into_iter().zip(outcomes) {
                        // The caller may have gone; what was stored stays stored.
                        let _ = pending.done.send(outcome);
                    }
                }
                Err(e) => {
                    for pending in batch {
                        let _ = pending.done.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Applies the commands in order to one read of the session and stores all their changes
    /// with one commit; applies them again to fresh state if another node got there first.
    async fn store_batch(
        &self,
        id: SessionId,
        batch: &[Pending],
    ) -> Result<Vec<Result<Ack, BrokerError>>, BrokerError> {
        // A merge moves voters, so the rules need them; no other command reads voters.
        let voters_of: Vec<QuestionId> = batch
            .iter()
            .filter_map(|p| match p.command {
                Command::Merge { question, into } => Some([question, into]),
                _ => None,
            })
            .flatten()
            .collect();
        // Vote counts the events of these questions carry are read fresh.
        let named: Vec<QuestionId> = batch
            .iter()
            .flat_map(|p| p.command.questions())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Taken out: if a call fails below, what Redis holds is unknown and the copy is dropped.
        let mut held = lock(&self.cache).remove(&id);
        for attempt in 0..MAX_ATTEMPTS {
            let (version, data) = self.read(id, held.take(), &named, &voters_of).await?;
            let mut data = data.with_rules(self.store.config.rules.clone());
            let now = OffsetDateTime::now_utc();
            let mut events = Vec::new();
            let mut touched = Touched::default();
            let mut merges = Vec::new();
            // Per command: its reply and how many events the batch had after it, or a refusal.
            let mut outcomes = Vec::with_capacity(batch.len());
            for pending in batch {
                match data.apply(&pending.actor, pending.command.clone(), now) {
                    Ok(applied) => {
                        if let Command::Merge { question, into } = pending.command {
                            merges.push((question, into));
                        }
                        events.extend(applied.events);
                        touched.extend(applied.touched);
                        outcomes.push(Ok((applied.reply, events.len() as u64)));
                    }
                    // A refused command changed nothing.
                    Err(refusal) => outcomes.push(Err(refusal)),
                }
            }
            if outcomes.iter().all(Result::is_err) {
                self.keep(id, version, data);
                return Ok(outcomes
                    .into_iter()
                    .map(|o| Err(o.err().map_or(BrokerError::NoSession, Into::into)))
                    .collect());
            }
            let change = Change::new(version, &data, &touched, &events, merges)?;
            match self.store.commit(id, &change).await? {
                Committed::Stored(head) => {
                    // The commit moved the version by one and stored exactly what `data` holds.
                    self.keep(id, version + 1, data);
                    let before = head - events.len() as u64;
                    return Ok(outcomes
                        .into_iter()
                        .map(|o| match o {
                            Ok((reply, after)) => Ok(Ack {
                                seq: before + after,
                                reply,
                            }),
                            Err(refusal) => Err(refusal.into()),
                        })
                        .collect());
                }
                Committed::Moved => {
                    tracing::debug!(attempt, "session changed on another node; applying again");
                    crate::metrics::commit_conflicts().increment(1);
                    held = Some(Cached {
                        version,
                        data,
                        unstored: touched,
                        used: 0,
                    });
                    let jitter = rand::random::<u64>() % (200 * u64::from(attempt + 1));
                    tokio::time::sleep(Duration::from_micros(jitter)).await;
                }
            }
        }
        Err(BrokerError::unavailable(
            "the session is changing too fast to store this; try again",
        ))
    }

    /// The session's current state and version: the cached copy brought up to date when there
    /// is one, else one full read. `named`: questions whose vote counts must be current;
    /// `voters_of`: questions whose voters the batch needs.
    async fn read(
        &self,
        id: SessionId,
        held: Option<Cached>,
        named: &[QuestionId],
        voters_of: &[QuestionId],
    ) -> Result<(u64, SessionData), BrokerError> {
        if let Some(mut held) = held {
            let also: Vec<QuestionId> = held.unstored.questions.iter().copied().collect();
            let refreshed = self
                .store
                .refresh(id, held.version, &also, named, voters_of)
                .await?;
            if let Refreshed::Changed {
                version,
                next_question,
                session,
                records,
                counts,
                voters,
            } = refreshed
            {
                held.data.refresh(session, next_question, records);
                for (question, votes) in counts {
                    held.data.set_votes(question, votes, None);
                }
                for (question, voters) in voters {
                    held.data
                        .set_votes(question, voters.len() as u64, Some(voters));
                }
                return Ok((version, held.data));
            }
        }
        let loaded = self.store.load(id, None, voters_of).await?;
        Ok((loaded.version, loaded.data))
    }

    /// Keeps `data` (at `version`) for the session's next batch, evicting the least recently
    /// used session when full. An ended session takes no more commands and is not kept.
    fn keep(&self, id: SessionId, version: u64, data: SessionData) {
        if data.session.state == crate::model::SessionState::Ended {
            return;
        }
        let used = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED && !cache.contains_key(&id) {
            let oldest = cache.iter().min_by_key(|(_, c)| c.used).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            id,
            Cached {
                version,
                data,
                unstored: Touched::default(),
                used,
            },
        );
    }
}
