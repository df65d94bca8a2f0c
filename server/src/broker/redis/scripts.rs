//! One typed call per Lua script: each lays out KEYS and ARGV in the order its script (the
//! `*.lua` file of the same name) reads them, and turns the script's reply into broker terms.

use redis::Script;
use uuid::Uuid;

use super::Store;
use super::codec::{self, Change, Loaded, LoadedRaw, Refreshed, RefreshedRaw};
use crate::broker::{Ack, BrokerError};
use crate::domain::{Audience, Refusal, Reply};
use crate::model::{QuestionId, Session, SessionId, UserId};

/// Least time between two `votes` events of a session, whichever node flushes: 80 % of the
/// hub's flush tick, so one node's ticks (a little early or late) are never skipped, and N nodes
/// together still send about four a second rather than 4 × N.
const VOTES_EVERY_MS: u64 = crate::hub::VOTE_FLUSH_EVERY.as_millis() as u64 * 4 / 5;

pub struct Scripts {
    create: Script,
    load: Script,
    refresh: Script,
    commit: Script,
    vote: Script,
    flush: Script,
    viewers: Script,
    video: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            create: Script::new(include_str!("create.lua")),
            load: Script::new(include_str!("load.lua")),
            refresh: Script::new(include_str!("refresh.lua")),
            commit: Script::new(include_str!("commit.lua")),
            vote: Script::new(include_str!("vote.lua")),
            flush: Script::new(include_str!("flush.lua")),
            viewers: Script::new(include_str!("viewers.lua")),
            video: Script::new(include_str!("video.lua")),
        }
    }
}

/// What a commit did.
pub enum Committed {
    /// Stored; the head of the log is now this seq.
    Stored(u64),
    /// Another node changed the session since it was read: nothing was stored.
    Moved,
}

impl Store {
    /// `create.lua`: stores a new session; `false` if its id exists.
    pub async fn create(&self, session: &Session) -> Result<bool, BrokerError> {
        let created: i64 = self
            .conn
            .call(
                self.scripts
                    .create
                    .key(self.keys.meta(session.id))
                    .key(self.keys.session(session.id))
                    .arg(codec::session_json(session)?)
                    .arg(codec::state_name(session.state))
                    .invoke_async(&mut self.conn.handle()),
            )
            .await?;
        Ok(created == 1)
    }

    /// `load.lua`: one consistent read of a session, with the voters of `voters_of` and whether
    /// `viewer` voted for each question.
    pub async fn load(
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
            .conn
            .read(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Loaded::decode(raw.ok_or(BrokerError::NoSession)?, viewer)
    }

    /// `refresh.lua`: what changed since `held` (the version a cached copy is at): the records
    /// written since, plus those of `also`; the vote counts of `counts`; the voters of
    /// `voters_of`.
    pub async fn refresh(
        &self,
        id: SessionId,
        held: u64,
        also: &[QuestionId],
        counts: &[QuestionId],
        voters_of: &[QuestionId],
    ) -> Result<Refreshed, BrokerError> {
        let mut invocation = self.scripts.refresh.prepare_invoke();
        invocation
            .key(self.keys.meta(id))
            .key(self.keys.session(id))
            .key(self.keys.questions(id))
            .key(self.keys.changed(id))
            .arg(self.keys.voters_prefix(id))
            .arg(held)
            .arg(also.len());
        for question in also {
            invocation.arg(question);
        }
        invocation.arg(counts.len());
        for question in counts {
            invocation.arg(question);
        }
        for question in voters_of {
            invocation.arg(question);
        }
        let invocation = &invocation;
        let raw: Option<RefreshedRaw> = self
            .conn
            .read(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Refreshed::decode(raw.ok_or(BrokerError::NoSession)?)
    }

    /// `commit.lua`: stores `change` if the session is still at the version it was read at.
    pub async fn commit(&self, id: SessionId, change: &Change) -> Result<Committed, BrokerError> {
        let mut invocation = self.scripts.commit.prepare_invoke();
        invocation
            .key(self.keys.meta(id))
            .key(self.keys.session(id))
            .key(self.keys.questions(id))
            .key(self.keys.qstate(id))
            .key(self.keys.dirty(id))
            .key(self.keys.events(id))
            .key(self.keys.viewers(id))
            .key(self.keys.changed(id))
            .arg(change.version)
            .arg(self.keys.voters_prefix(id))
            .arg(self.config.history.max(1))
            .arg(change.session.as_deref().unwrap_or(""))
            .arg(change.state)
            .arg(change.next_question)
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
        let (status, head): (i64, u64) = self
            .conn
            .call(invocation.invoke_async(&mut self.conn.handle()))
            .await?;
        match status {
            1 => Ok(Committed::Stored(head)),
            0 => Ok(Committed::Moved),
            _ => Err(BrokerError::NoSession),
        }
    }

    /// `vote.lua`: casts (`up`) or takes back one vote. The rules a vote obeys are checked by
    /// the script, against the question's `qstate`.
    pub async fn vote(
        &self,
        id: SessionId,
        voter: UserId,
        question: QuestionId,
        up: bool,
    ) -> Result<Ack, BrokerError> {
        let outcome: i64 = self
            .conn
            .call(
                self.scripts
                    .vote
                    .key(self.keys.meta(id))
                    .key(self.keys.qstate(id))
                    .key(self.keys.voters(id, question))
                    .key(self.keys.dirty(id))
                    .arg(question)
                    .arg(voter.to_string())
                    .arg(u8::from(up))
                    .invoke_async(&mut self.conn.handle()),
            )
            .await?;
        match outcome {
            -1 => Err(BrokerError::NoSession),
            -2 => Err(Refusal::SessionEnded.into()),
            -3 | -5 => Err(Refusal::NotFound(question).into()),
            -4 => {
                Err(Refusal::Conflict(format!("question {question} is not open for votes")).into())
            }
            head => Ok(Ack {
                seq: u64::try_from(head).unwrap_or_default(),
                reply: Reply::Voted(up),
            }),
        }
    }

    /// `flush.lua`: appends one `votes` event with the counts changed since the last one, at
    /// most one per [`VOTES_EVERY_MS`] for the session over all nodes.
    pub async fn flush_votes(&self, id: SessionId) -> Result<(), BrokerError> {
        let outcome: i64 = self
            .conn
            .call(
                self.scripts
                    .flush
                    .key(self.keys.meta(id))
                    .key(self.keys.qstate(id))
                    .key(self.keys.dirty(id))
                    .key(self.keys.events(id))
                    .arg(self.keys.voters_prefix(id))
                    .arg(self.config.history.max(1))
                    .arg(codec::audience_json(&Audience::Public)?)
                    .arg(VOTES_EVERY_MS)
                    .invoke_async(&mut self.conn.handle()),
            )
            .await?;
        if outcome < 0 {
            return Err(BrokerError::NoSession);
        }
        Ok(())
    }

    /// `viewers.lua`: records `node`'s count and returns the total over live nodes.
    pub async fn report_viewers(
        &self,
        id: SessionId,
        node: Uuid,
        count: u64,
    ) -> Result<u64, BrokerError> {
        let ttl = self.config.presence_ttl;
        self.conn
            .call(
                self.scripts
                    .viewers
                    .key(self.keys.viewers(id))
                    .arg(node.to_string())
                    .arg(count)
                    .arg(ttl.as_millis() as u64)
                    .arg(ttl.as_secs().saturating_mul(6).max(60))
                    .invoke_async(&mut self.conn.handle()),
            )
            .await
    }

    /// `video.lua`: `node` (when given) reports the URL other nodes pull the session from while
    /// its relay has the publisher sending (`None`: not any more); returns the URL of the node
    /// whose publisher started last, if any. `None` for `node` only reads.
    pub async fn report_video(
        &self,
        id: SessionId,
        node: Option<Uuid>,
        url: Option<&str>,
    ) -> Result<Option<String>, BrokerError> {
        let ttl = self.config.presence_ttl;
        self.conn
            .call(
                self.scripts
                    .video
                    .key(self.keys.video(id))
                    .arg(node.map_or_else(String::new, |n| n.to_string()))
                    .arg(url.unwrap_or(""))
                    .arg(ttl.as_millis() as u64)
                    .arg(ttl.as_secs().saturating_mul(6).max(60))
                    .invoke_async(&mut self.conn.handle()),
            )
            .await
    }
}
