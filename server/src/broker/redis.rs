//! The Redis broker: any number of `oncolive` nodes on one Redis act as one service.
//!
//! - Each session's events are one Redis Stream whose entry ids are the events' `seq`, handed
//!   out by the same script that appends them, so every node agrees on one order and a client
//!   may resume on any node.
//! - Commands other than votes run through the same rules as everywhere ([`SessionData::apply`])
//!   on a snapshot read in one script, and are stored by another script only if the session's
//!   `version` has not moved meanwhile (compare-and-set; on a conflict the command is applied
//!   again to fresh state). Only the question records the command changed are written.
//! - Votes never touch the records: a script checks the question is open and adds the voter to
//!   the question's set, so thousands of votes a second cost a few set operations each.
//! - One reader task per node follows the streams of the sessions this node has clients for.
//!
//! The key schema is in [`keys`] and in docs/architecture.md ("Redis key schema").

mod keys;
mod reader;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use redis::{RedisError, RedisResult, Script};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use self::keys::Keys;
use self::reader::{Feeds, Reader, decode};
use super::{Ack, Broker, BrokerError, Event, Replay, SessionView};
use crate::domain::{Actor, Audience, Command, EventBody, Refusal, Reply, SessionData};
use crate::model::{Question, QuestionId, Role, Session, SessionId, SessionState, UserId};

/// The seq written into frames before the commit script puts the real one in its place.
const SEQ_PLACEHOLDER: u64 = u64::MAX;
/// How often a batch is applied again after other nodes changed the session under it.
const MAX_ATTEMPTS: u32 = 50;
/// Most commands stored by one commit.
const MAX_BATCH: usize = 64;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`. Never logged: it may hold a password.
    pub url: String,
    /// Prefix of every key, so several deployments (or tests) share one Redis.
    pub prefix: String,
    /// Events kept per session for clients that resume (approximately: `MAXLEN ~`).
    pub history: usize,
    /// How long an ended session is kept.
    pub retention: Duration,
    /// The longest a request waits for Redis before failing as unavailable.
    pub command_timeout: Duration,
    /// A node that has not reported its viewers for this long is no longer counted.
    pub presence_ttl: Duration,
    /// How long the reader waits on its streams per round.
    pub block: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "oncolive".into(),
            history: 10_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            command_timeout: Duration::from_secs(2),
            presence_ttl: Duration::from_secs(10),
            block: Duration::from_secs(1),
        }
    }
}

struct Scripts {
    create: Script,
    load: Script,
    commit: Script,
    vote: Script,
    flush: Script,
    viewers: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            create: Script::new(include_str!("redis/create.lua")),
            load: Script::new(include_str!("redis/load.lua")),
            commit: Script::new(include_str!("redis/commit.lua")),
            vote: Script::new(include_str!("redis/vote.lua")),
            flush: Script::new(include_str!("redis/flush.lua")),
            viewers: Script::new(include_str!("redis/viewers.lua")),
        }
    }
}

pub struct RedisBroker {
    inner: Arc<Inner>,
    /// Stops the reader task with the broker.
    _reader: DropGuard,
}

/// The broker's state, shared with the tasks that store batches of commands. `pub` only so that
/// `RedisBroker` may deref to it; nothing outside this module can name or use it.
pub struct Inner {
    /// Shared by every request; reconnects by itself. Cloning it is cheap.
    conn: ConnectionManager,
    keys: Keys,
    config: RedisConfig,
    scripts: Scripts,
    /// Commands waiting to be stored, per session. A session is in the map while a task is
    /// storing its commands: commands that arrive meanwhile join the next batch, so one commit
    /// (one fsync) stores many, and commands from this node never race each other on the
    /// version check. A std mutex: only pushed to and drained, never held across an await.
    queues: std::sync::Mutex<HashMap<SessionId, Vec<Pending>>>,
    feeds: Arc<Feeds>,
}

/// A command waiting for its batch.
struct Pending {
    actor: Actor,
    command: Command,
    done: oneshot::Sender<Result<Ack, BrokerError>>,
}

/// Method calls on the broker are calls on its shared state.
impl std::ops::Deref for RedisBroker {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl RedisBroker {
    /// Sets up the connections and starts this node's reader. Redis need not be up yet:
    /// requests fail as unavailable until it is.
    pub async fn connect(config: RedisConfig) -> Result<RedisBroker, BrokerError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| BrokerError::Internal(format!("bad Redis URL: {e}")))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| BrokerError::Internal(format!("cannot set up Redis: {e}")))?;
        let keys = Keys::new(&config.prefix);
        let feeds = Arc::new(Feeds::default());
        let stop = CancellationToken::new();
        let reader = Reader {
            client,
            keys: keys.clone(),
            feeds: feeds.clone(),
            block: config.block,
            timeout: config.command_timeout,
        };
        tokio::spawn(reader.run(stop.clone()));
        let broker = RedisBroker {
            inner: Arc::new(Inner {
                conn,
                keys,
                scripts: Scripts::new(),
                queues: std::sync::Mutex::default(),
                feeds,
                config,
            }),
            _reader: stop.drop_guard(),
        };
        if let Err(e) = Broker::ping(&broker).await {
            tracing::warn!(error = %e, "Redis does not answer yet; requests fail until it does");
        }
        Ok(broker)
    }
}

impl Inner {
    /// Runs one Redis call with the command timeout, mapping failures to broker errors.
    async fn call<T>(&self, call: impl Future<Output = RedisResult<T>>) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.config.command_timeout, call).await {
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(BrokerError::Unavailable(format!(
                "Redis did not answer within {} ms",
                self.config.command_timeout.as_millis()
            ))),
        }
    }

    /// Runs a read, and once more on a fresh connection if the connection had been dropped (as
    /// it is when Redis restarts while this node is idle). Reads are safe to send twice; writes
    /// are not, so they go through [`Self::call`] only.
    async fn read<T, F, Fut>(&self, mut attempt: F) -> Result<T, BrokerError>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let first =
            tokio::time::timeout(self.config.command_timeout, attempt(self.conn.clone())).await;
        match first {
            Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error() => {
                self.call(attempt(self.conn.clone())).await
            }
            Ok(result) => result.map_err(redis_error),
            Err(_) => Err(BrokerError::Unavailable(format!(
                "Redis did not answer within {} ms",
                self.config.command_timeout.as_millis()
            ))),
        }
    }

    async fn load(
        &self,
        id: SessionId,
        viewer: Option<UserId>,
        voters_of: &[QuestionId],
    ) -> Result<Loaded, BrokerError> {
        let mut invocation = self.scripts.load.prepare_invoke();
        invocation
            .key(self.keys.meta(id))
            .key(self.keys.session(id))
            .key(self.keys.questions(id))
            .arg(self.keys.voters_prefix(id))
            .arg(viewer.map(|v| v.to_string()).unwrap_or_default());
        for question in voters_of {
            invocation.arg(question);
        }
        let invocation = &invocation;
        let raw: Option<LoadedRaw> = self
            .read(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let (seq, version, next_question, session, questions, voters) =
            raw.ok_or(BrokerError::NoSession)?;
        Ok(Loaded {
            seq,
            version,
            next_question,
            session: session.ok_or(BrokerError::NoSession)?,
            questions,
            voters: voters.into_iter().collect(),
        })
    }

    async fn vote(
        &self,
        id: SessionId,
        actor: &Actor,
        command: Command,
    ) -> Result<Ack, BrokerError> {
        let (question, up) = match command {
            Command::Vote { question } => (question, true),
            Command::Unvote { question } => (question, false),
            _ => return Err(BrokerError::Internal("not a vote".into())),
        };
        command.check_role(actor.role)?;
        let mut conn = self.conn.clone();
        let outcome: i64 = self
            .call(
                self.scripts
                    .vote
                    .key(self.keys.meta(id))
                    .key(self.keys.qstate(id))
                    .key(self.keys.voters(id, question))
                    .key(self.keys.dirty(id))
                    .arg(question)
                    .arg(actor.id.to_string())
                    .arg(u8::from(up))
                    .invoke_async(&mut conn),
            )
            .await?;
        match outcome {
            -1 => Err(BrokerError::NoSession),
            -2 => Err(Refusal::SessionEnded.into()),
            -3 => Err(Refusal::NotFound(question).into()),
            -4 => {
                Err(Refusal::Conflict(format!("question {question} is not open for votes")).into())
            }
            head => Ok(Ack {
                seq: u64::try_from(head).unwrap_or_default(),
                reply: Reply::Voted(up),
            }),
        }
    }

    async fn commit(&self, id: SessionId, change: &Change) -> Result<Committed, BrokerError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.commit.prepare_invoke();
        invocation
            .key(self.keys.meta(id))
            .key(self.keys.session(id))
            .key(self.keys.questions(id))
            .key(self.keys.qstate(id))
            .key(self.keys.dirty(id))
            .key(self.keys.events(id))
            .key(self.keys.viewers(id))
            .arg(change.version)
            .arg(self.keys.voters_prefix(id))
            .arg(self.config.history.max(1))
            .arg(change.session.as_deref().unwrap_or(""))
            .arg(change.state)
            .arg(change.next_question)
            .arg(self.config.retention.as_secs().max(1))
            .arg(change.merges.len());
        for (question, into) in &change.merges {
            invocation.arg(question).arg(into);
        }
        invocation.arg(change.records.len());
        for (question, record, state) in &change.records {
            invocation.arg(question).arg(record).arg(*state);
        }
        invocation.arg(change.counts.len());
        for (question, votes) in &change.counts {
            invocation.arg(question).arg(votes);
        }
        invocation.arg(change.events.len());
        for (audience, before, after) in &change.events {
            invocation.arg(audience).arg(before).arg(after);
        }
        let (status, head): (i64, u64) = self.call(invocation.invoke_async(&mut conn)).await?;
        match status {
            1 => Ok(Committed::Stored(head)),
            0 => Ok(Committed::Moved),
            _ => Err(BrokerError::NoSession),
        }
    }
}

impl Inner {
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
                        let _ = pending.done.send(Err(copy(&e)));
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
        let voters_of: Vec<QuestionId> = batch
            .iter()
            .filter_map(|p| match p.command {
                Command::Merge { question, into } => Some([question, into]),
                _ => None,
            })
            .flatten()
            .collect();
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = self.load(id, None, &voters_of).await?;
            let mut data = loaded.data(None)?;
            let now = OffsetDateTime::now_utc();
            let mut events = Vec::new();
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
            let change = Change::new(&loaded, &data, &events, merges)?;
            match self.commit(id, &change).await? {
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
        Err(BrokerError::Unavailable(
            "the session is changing too fast to store this; try again".into(),
        ))
    }
}

/// The same error for every command of a failed batch.
fn copy(e: &BrokerError) -> BrokerError {
    match e {
        BrokerError::NoSession => BrokerError::NoSession,
        BrokerError::Refused(r) => BrokerError::Refused(r.clone()),
        BrokerError::Unavailable(m) => BrokerError::Unavailable(m.clone()),
        BrokerError::Internal(m) => BrokerError::Internal(m.clone()),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `load.lua` returns: seq, version, next question, session JSON, per question (id,
/// record, votes, whether the viewer voted), per requested question (id, voters).
type LoadedRaw = (
    u64,
    u64,
    u64,
    Option<String>,
    Vec<(QuestionId, String, u64, u8)>,
    Vec<(QuestionId, Vec<String>)>,
);

/// One consistent read of a session.
struct Loaded {
    seq: u64,
    version: u64,
    next_question: u64,
    session: String,
    /// (id, stored record, votes, whether the viewer voted).
    questions: Vec<(QuestionId, String, u64, u8)>,
    voters: HashMap<QuestionId, Vec<String>>,
}

impl Loaded {
    /// The session's state as the rules know it: stored records with the live vote counts, and
    /// the voters that were asked for (or just the viewer, where the viewer voted).
    fn data(&self, viewer: Option<UserId>) -> Result<SessionData, BrokerError> {
        let mut questions = serde_json::Map::with_capacity(self.questions.len());
        for (id, record, votes, voted) in &self.questions {
            let mut record: Value = serde_json::from_str(record).map_err(corrupt)?;
            set(&mut record, &["question", "votes"], Value::from(*votes))?;
            let voters = match (self.voters.get(id), viewer) {
                (Some(voters), _) => voters.clone(),
                (None, Some(viewer)) if *voted == 1 => vec![viewer.to_string()],
                (None, _) => Vec::new(),
            };
            set(&mut record, &["voters"], Value::from(voters))?;
            questions.insert(id.to_string(), record);
        }
        let session: Value = serde_json::from_str(&self.session).map_err(corrupt)?;
        let value = serde_json::json!({
            "session": session,
            "next_question": self.next_question,
            "questions": questions,
            "dirty_votes": [],
        });
        serde_json::from_value(value).map_err(corrupt)
    }
}

/// What one accepted command writes.
struct Change {
    version: u64,
    /// The session's JSON when it changed.
    session: Option<String>,
    state: &'static str,
    next_question: u64,
    /// Changed records: (id, record as stored, qstate code).
    records: Vec<(QuestionId, String, &'static str)>,
    /// (question, the vote count its events carry), checked against the voters at commit.
    counts: Vec<(QuestionId, u64)>,
    /// (merged question, question merged into), in the order the merges were applied.
    merges: Vec<(QuestionId, QuestionId)>,
    /// (audience JSON, frame text before the seq, frame text after it).
    events: Vec<(String, String, String)>,
}

impl Change {
    fn new(
        loaded: &Loaded,
        data: &SessionData,
        applied: &[(Audience, EventBody)],
        merges: Vec<(QuestionId, QuestionId)>,
    ) -> Result<Change, BrokerError> {
        let stored: HashMap<QuestionId, &str> = loaded
            .questions
            .iter()
            .map(|(id, record, _, _)| (*id, record.as_str()))
            .collect();
        let value = serde_json::to_value(data).map_err(internal)?;
        let next_question = value
            .get("next_question")
            .and_then(Value::as_u64)
            .ok_or_else(|| internal("session data without next_question"))?;
        let mut records = Vec::new();
        if let Some(questions) = value.get("questions").and_then(Value::as_object) {
            for (id, record) in questions {
                let id: QuestionId = id.parse().map_err(internal)?;
                let (text, state) = stored_record(record.clone())?;
                if stored.get(&id) != Some(&text.as_str()) {
                    records.push((id, text, state));
                }
            }
        }
        let session = serde_json::to_string(&data.session).map_err(internal)?;
        let mut counts = Vec::new();
        let mut events = Vec::new();
        for (audience, body) in applied {
            if let EventBody::Question(q) = body {
                counts.push((q.id, q.votes));
            }
            let frame = Event::encode(SEQ_PLACEHOLDER, *audience, body.clone()).frame;
            let marker = format!("\"seq\":{SEQ_PLACEHOLDER}");
            let (before, after) = frame
                .as_str()
                .split_once(&marker)
                .ok_or_else(|| internal("an event frame without seq"))?;
            events.push((
                serde_json::to_string(audience).map_err(internal)?,
                format!("{before}\"seq\":"),
                after.to_owned(),
            ));
        }
        Ok(Change {
            version: loaded.version,
            session: (session != loaded.session).then_some(session),
            state: state_name(data.session.state),
            next_question,
            records,
            counts,
            merges,
            events,
        })
    }
}

enum Committed {
    Stored(u64),
    /// Another node changed the session since it was read.
    Moved,
}

/// A record as stored: without voters and with `votes` 0 (the count lives in the voters set),
/// so that a vote never makes a record differ. Also its qstate code.
fn stored_record(mut record: Value) -> Result<(String, &'static str), BrokerError> {
    set(&mut record, &["voters"], Value::Array(Vec::new()))?;
    set(&mut record, &["question", "votes"], Value::from(0))?;
    let was_public = record
        .get("was_public")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let question: Question = record
        .get("question")
        .cloned()
        .ok_or_else(|| internal("a record without question"))
        .and_then(|q| serde_json::from_value(q).map_err(internal))?;
    let state = if question.status.takes_votes() {
        "o"
    } else if question.status.is_public(was_public) {
        "p"
    } else {
        "h"
    };
    Ok((serde_json::to_string(&record).map_err(internal)?, state))
}

/// Sets `path` inside nested JSON objects.
fn set(value: &mut Value, path: &[&str], new: Value) -> Result<(), BrokerError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut at = value;
    for key in parents {
        at = at
            .get_mut(*key)
            .ok_or_else(|| corrupt(format!("stored record without {key}")))?;
    }
    at.as_object_mut()
        .ok_or_else(|| corrupt("stored record is not an object"))?
        .insert((*last).to_owned(), new);
    Ok(())
}

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Scheduled => "scheduled",
        SessionState::Live => "live",
        SessionState::Ended => "ended",
    }
}

fn redis_error(e: RedisError) -> BrokerError {
    use redis::{ErrorKind, ServerErrorKind};
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::Extension
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        );
    if unavailable {
        BrokerError::Unavailable(e.to_string())
    } else {
        tracing::error!(error = %e, "Redis refused a command");
        BrokerError::Internal(e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> BrokerError {
    tracing::error!(error = %e, "unreadable session data in Redis");
    BrokerError::Internal(format!("unreadable session data: {e}"))
}

#[async_trait]
impl Broker for RedisBroker {
    async fn create_session(&self, session: Session) -> Result<(), BrokerError> {
        let json = serde_json::to_string(&session).map_err(internal)?;
        let mut conn = self.conn.clone();
        // Indexed first: an id whose session was never stored is pruned by `sessions`.
        let _: i64 = self
            .call(
                redis::cmd("SADD")
                    .arg(self.keys.sessions())
                    .arg(session.id.to_string())
                    .query_async(&mut conn),
            )
            .await?;
        let created: i64 = self
            .call(
                self.scripts
                    .create
                    .key(self.keys.meta(session.id))
                    .key(self.keys.session(session.id))
                    .arg(json)
                    .arg(state_name(session.state))
                    .invoke_async(&mut conn),
            )
            .await?;
        if created == 1 {
            Ok(())
        } else {
            Err(BrokerError::Internal("session id already exists".into()))
        }
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, BrokerError> {
        let get = redis::cmd("GET").arg(self.keys.session(id)).to_owned();
        let get = &get;
        let json: Option<String> = self
            .read(|mut conn| async move { get.query_async(&mut conn).await })
            .await?;
        json.map(|j| serde_json::from_str(&j).map_err(corrupt))
            .transpose()
    }

    async fn sessions(&self) -> Result<Vec<Session>, BrokerError> {
        let mut conn = self.conn.clone();
        let members = redis::cmd("SMEMBERS").arg(self.keys.sessions()).to_owned();
        let members = &members;
        let ids: Vec<String> = self
            .read(|mut conn| async move { members.query_async(&mut conn).await })
            .await?;
        let ids: Vec<SessionId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("GET").arg(self.keys.session(*id));
        }
        let pipe = &pipe;
        let found: Vec<Option<String>> = self
            .read(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        let mut sessions = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, json) in ids.iter().zip(found) {
            match json {
                Some(json) => sessions.push(serde_json::from_str(&json).map_err(corrupt)?),
                None => expired.push(id.to_string()),
            }
        }
        if !expired.is_empty() {
            // Best effort: a failure only leaves the pruning to the next listing.
            let _ = self
                .call::<i64>(
                    redis::cmd("SREM")
                        .arg(self.keys.sessions())
                        .arg(&expired)
                        .query_async(&mut conn),
                )
                .await;
        }
        Ok(sessions)
    }

    async fn apply(
        &self,
        id: SessionId,
        actor: &Actor,
        command: Command,
    ) -> Result<Ack, BrokerError> {
        if command.is_vote() {
            return self.vote(id, actor, command).await;
        }
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
            tokio::spawn(self.inner.clone().store_queue(id));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(BrokerError::Internal("the command was dropped".into())))
    }

    async fn flush_votes(&self, id: SessionId) -> Result<(), BrokerError> {
        let audience = serde_json::to_string(&Audience::Public).map_err(internal)?;
        let mut conn = self.conn.clone();
        let outcome: i64 = self
            .call(
                self.scripts
                    .flush
                    .key(self.keys.meta(id))
                    .key(self.keys.qstate(id))
                    .key(self.keys.dirty(id))
                    .key(self.keys.events(id))
                    .arg(self.keys.voters_prefix(id))
                    .arg(self.config.history.max(1))
                    .arg(audience)
                    .invoke_async(&mut conn),
            )
            .await?;
        if outcome < 0 {
            return Err(BrokerError::NoSession);
        }
        Ok(())
    }

    async fn view(
        &self,
        id: SessionId,
        role: Role,
        viewer: UserId,
    ) -> Result<SessionView, BrokerError> {
        let loaded = self.load(id, Some(viewer), &[]).await?;
        let data = loaded.data(Some(viewer))?;
        let (questions, my_votes) = data.visible_to(role, viewer);
        Ok(SessionView {
            seq: loaded.seq,
            session: data.session,
            questions,
            my_votes,
        })
    }

    async fn replay(&self, id: SessionId, since: u64) -> Result<Replay, BrokerError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(self.keys.meta(id))
            .arg("seq")
            .cmd("XRANGE")
            .arg(self.keys.events(id))
            .arg(format!("{}-0", since.saturating_add(1)))
            .arg("+");
        let pipe = &pipe;
        let (head, range): (Option<u64>, StreamRangeReply) = self
            .read(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        let head = head.ok_or(BrokerError::NoSession)?;
        // The stream is trimmed approximately (whole macro nodes, cheaper), so it may hold more
        // than `history` events; resuming is promised for the last `history` only, as in memory.
        if since > head || head - since > self.config.history.max(1) as u64 {
            return Ok(Replay::TooOld);
        }
        let events: Vec<Arc<Event>> = range
            .ids
            .iter()
            .map(|entry| decode(entry).map(Arc::new).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let complete = events.first().map(|e| e.seq) == Some(since + 1)
            && events.last().map(|e| e.seq) == Some(head)
            && events.len() as u64 == head - since;
        if since < head && !complete {
            return Ok(Replay::TooOld);
        }
        Ok(Replay::Events { events, head })
    }

    async fn subscribe(
        &self,
        id: SessionId,
    ) -> Result<broadcast::Receiver<Arc<Event>>, BrokerError> {
        let hget = redis::cmd("HGET")
            .arg(self.keys.meta(id))
            .arg("seq")
            .to_owned();
        let hget = &hget;
        let head: Option<u64> = self
            .read(|mut conn| async move { hget.query_async(&mut conn).await })
            .await?;
        let head = head.ok_or(BrokerError::NoSession)?;
        let (live, new) = self.feeds.subscribe(id, head);
        if let (true, Some(reader)) = (new, self.feeds.reader_client()) {
            // Cut the reader's current wait short so it reads this stream too. If this fails,
            // it still does after at most one block interval.
            let mut conn = self.conn.clone();
            let _ = self
                .call::<i64>(
                    redis::cmd("CLIENT")
                        .arg("UNBLOCK")
                        .arg(reader)
                        .query_async(&mut conn),
                )
                .await;
        }
        Ok(live)
    }

    async fn report_viewers(
        &self,
        id: SessionId,
        node: Uuid,
        count: u64,
    ) -> Result<u64, BrokerError> {
        let ttl = self.config.presence_ttl;
        let mut conn = self.conn.clone();
        self.call(
            self.scripts
                .viewers
                .key(self.keys.viewers(id))
                .arg(node.to_string())
                .arg(count)
                .arg(ttl.as_millis() as u64)
                .arg(ttl.as_secs().saturating_mul(6).max(60))
                .invoke_async(&mut conn),
        )
        .await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        let _: String = self.call(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ServerMsg, VoteCount};

    #[test]
    fn the_placeholder_seq_splits_every_frame_once() {
        let frame = Event::encode(
            SEQ_PLACEHOLDER,
            Audience::Public,
            EventBody::QuestionRemoved(3),
        )
        .frame;
        let marker = format!("\"seq\":{SEQ_PLACEHOLDER}");
        assert_eq!(frame.as_str().matches(&marker).count(), 1);
        let (before, after) = frame.as_str().split_once(&marker).unwrap_or_default();
        let rebuilt = format!("{before}\"seq\":17{after}");
        assert_eq!(
            rebuilt,
            Event::encode(17, Audience::Public, EventBody::QuestionRemoved(3))
                .frame
                .as_str()
        );
    }

    #[test]
    fn the_flush_script_writes_votes_frames_as_the_server_encodes_them() {
        // What flush.lua concatenates, for seq 9 and counts {3: 12, 10: 1}.
        let lua = r#"{"type":"votes","seq":9,"votes":[{"id":3,"votes":12},{"id":10,"votes":1}]}"#;
        let event = Event::encode(
            9,
            Audience::Public,
            EventBody::Votes(vec![(3, 12), (10, 1)]),
        );
        assert_eq!(event.frame.as_str(), lua);
        let parsed: ServerMsg = serde_json::from_str(lua).unwrap_or(ServerMsg::Pong { req: None });
        assert_eq!(
            parsed,
            ServerMsg::Votes {
                seq: 9,
                votes: vec![
                    VoteCount { id: 3, votes: 12 },
                    VoteCount { id: 10, votes: 1 }
                ]
            }
        );
        assert_eq!(
            serde_json::to_string(&Audience::Public).unwrap_or_default(),
            r#"{"to":"public"}"#
        );
    }
}
