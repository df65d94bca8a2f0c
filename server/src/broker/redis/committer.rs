//! Stores a session's commands in batches: commands that arrive while a commit is in flight
//! join the next one, so one commit (one round trip, one fsync) stores many, and commands from
//! this node never race each other on the version check. Only commands from different nodes do;
//! the loser applies its batch again to fresh state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::Store;
use super::codec::Change;
use super::scripts::Committed;
use crate::broker::{Ack, BrokerError, lock};
use crate::domain::{Actor, Command, Touched};
use crate::model::{QuestionId, SessionId};

/// How often a batch is applied again after other nodes changed the session under it.
const MAX_ATTEMPTS: u32 = 50;
/// Most commands stored by one commit.
const MAX_BATCH: usize = 64;

pub struct Committer {
    store: Arc<Store>,
    /// Commands waiting to be stored, per session. A session is in the map while a task is
    /// storing its commands. A std mutex: only pushed to and drained, never held across an
    /// await.
    queues: Mutex<HashMap<SessionId, Vec<Pending>>>,
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
        }
    }

    /// Queues a command and waits until it is stored (or refused).
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
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = self.store.load(id, None, &voters_of).await?;
            let mut data = loaded.data.with_caps(self.store.config.question_caps);
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
                return Ok(outcomes
                    .into_iter()
                    .map(|o| Err(o.err().map_or(BrokerError::NoSession, Into::into)))
                    .collect());
            }
            let change = Change::new(loaded.version, &data, &touched, &events, merges)?;
            match self.store.commit(id, &change).await? {
                Committed::Stored(head) => {
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
                    let jitter = rand::random::<u64>() % (200 * u64::from(attempt + 1));
                    tokio::time::sleep(Duration::from_micros(jitter)).await;
                }
            }
        }
        Err(BrokerError::unavailable(
            "the session is changing too fast to store this; try again",
        ))
    }
}
