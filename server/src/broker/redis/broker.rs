//! The [`Broker`] trait on Redis: each method is a script call (see [`super::scripts`]), a
//! batch for the committer, or a plain read.

use std::sync::Arc;

use async_trait::async_trait;
use redis::streams::StreamRangeReply;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::codec::{self, decode_event};
use super::{RedisBroker, corrupt};
use crate::broker::{Ack, Broker, BrokerError, Replay, SessionView, system_actor};
use crate::domain::{Actor, Command};
use crate::model::{Role, Session, SessionId, UserId};
use crate::protocol::Event;

#[async_trait]
impl Broker for RedisBroker {
    async fn create_session(&self, session: Session) -> Result<(), BrokerError> {
        let store = &self.store;
        // Indexed first: a listing skips an id whose session is not stored (yet, or any more).
        let _: i64 = store
            .conn
            .call(
                redis::cmd("SADD")
                    .arg(store.keys.sessions())
                    .arg(session.id.to_string())
                    .query_async(&mut store.conn.handle()),
            )
            .await?;
        if store.create(&session).await? {
            Ok(())
        } else {
            Err(BrokerError::internal("session id already exists"))
        }
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, BrokerError> {
        let get = redis::cmd("GET")
            .arg(self.store.keys.session(id))
            .to_owned();
        let get = &get;
        let json: Option<String> = self
            .store
            .conn
            .read(|mut conn| async move { get.query_async(&mut conn).await })
            .await?;
        json.as_deref().map(codec::session_from_json).transpose()
    }

    async fn sessions(&self) -> Result<Vec<Session>, BrokerError> {
        let store = &self.store;
        let members = redis::cmd("SMEMBERS").arg(store.keys.sessions()).to_owned();
        let members = &members;
        let ids: Vec<String> = store
            .conn
            .read(|mut conn| async move { members.query_async(&mut conn).await })
            .await?;
        let ids: Vec<SessionId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One MGET, which a cluster connection splits by hash slot (a pipeline it cannot).
        let mut mget = redis::cmd("MGET");
        for id in &ids {
            mget.arg(store.keys.session(*id));
        }
        let mget = &mget;
        let found: Vec<Option<String>> = store
            .conn
            .read(|mut conn| async move { mget.query_async(&mut conn).await })
            .await?;
        // An id without its session is one being created right now (the index is written
        // first) or one a delete is removing: skipped, never pruned here. Keys do not expire,
        // and `delete_session` takes the id out of the index itself.
        let mut sessions = Vec::with_capacity(ids.len());
        for json in found.into_iter().flatten() {
            sessions.push(codec::session_from_json(&json)?);
        }
        Ok(sessions)
    }

    async fn apply(
        &self,
        id: SessionId,
        actor: &Actor,
        command: Command,
    ) -> Result<Ack, BrokerError> {
        match command {
            Command::Vote { question } | Command::Unvote { question } => {
                command.check_role(actor.role)?;
                let up = matches!(command, Command::Vote { .. });
                self.store.vote(id, actor.id, question, up).await
            }
            command => self.committer.submit(id, actor, command).await,
        }
    }

    async fn flush_votes(&self, id: SessionId) -> Result<(), BrokerError> {
        self.store.flush_votes(id).await
    }

    async fn view(
        &self,
        id: SessionId,
        role: Role,
        viewer: UserId,
    ) -> Result<SessionView, BrokerError> {
        let loaded = self.store.load(id, Some(viewer), &[]).await?;
        let (questions, my_votes) = loaded.data.visible_to(role, viewer);
        Ok(SessionView {
            seq: loaded.seq,
            session: loaded.data.session,
            questions,
            my_votes,
        })
    }

    async fn replay(&self, id: SessionId, since: u64) -> Result<Replay, BrokerError> {
        let store = &self.store;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(store.keys.meta(id))
            .arg("seq")
            .cmd("XRANGE")
            .arg(store.keys.events(id))
            .arg(format!("{}-0", since.saturating_add(1)))
            .arg("+");
        let pipe = &pipe;
        let (head, range): (Option<u64>, StreamRangeReply) = store
            .conn
            .read(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        let head = head.ok_or(BrokerError::NoSession)?;
        // The stream is trimmed approximately (whole macro nodes, cheaper), so it may hold more
        // than `history` events; resuming is promised for the last `history` only, as in memory.
        if since > head || head - since > store.config.history.max(1) as u64 {
            return Ok(Replay::TooOld);
        }
        let events: Vec<Arc<Event>> = range
            .ids
            .iter()
            .map(|entry| decode_event(entry).map(Arc::new).map_err(corrupt))
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
        let store = &self.store;
        let hget = redis::cmd("HGET")
            .arg(store.keys.meta(id))
            .arg("seq")
            .to_owned();
        let hget = &hget;
        let head: Option<u64> = store
            .conn
            .read(|mut conn| async move { hget.query_async(&mut conn).await })
            .await?;
        let head = head.ok_or(BrokerError::NoSession)?;
        let (live, new) = self.feeds.subscribe(id, head);
        if new {
            self.follow(id).await;
        }
        Ok(live)
    }

    async fn report_viewers(
        &self,
        id: SessionId,
        node: Uuid,
        count: u64,
    ) -> Result<u64, BrokerError> {
        self.store.report_viewers(id, node, count).await
    }

    async fn report_video(
        &self,
        id: SessionId,
        node: Uuid,
        origin: Option<&str>,
    ) -> Result<Option<String>, BrokerError> {
        self.store.report_video(id, Some(node), origin).await
    }

    async fn video_origin(&self, id: SessionId) -> Result<Option<String>, BrokerError> {
        self.store.report_video(id, None, None).await
    }

    async fn record_consent(
        &self,
        id: SessionId,
        user: UserId,
        at: OffsetDateTime,
    ) -> Result<OffsetDateTime, BrokerError> {
        let store = &self.store;
        let at = at.format(&Rfc3339).map_err(BrokerError::internal)?;
        // The first time stays: HSETNX, then read whichever time is stored.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("EXISTS")
            .arg(store.keys.meta(id))
            .cmd("HSETNX")
            .arg(store.keys.consents(id))
            .arg(user.to_string())
            .arg(&at)
            .ignore()
            .cmd("HGET")
            .arg(store.keys.consents(id))
            .arg(user.to_string());
        let (exists, stored): (bool, Option<String>) = store
            .conn
            .call(pipe.query_async(&mut store.conn.handle()))
            .await?;
        if !exists {
            // Nothing to consent to: undo what was just written for a session that is gone.
            let _ = store
                .conn
                .call::<i64>(
                    redis::cmd("DEL")
                        .arg(store.keys.consents(id))
                        .query_async(&mut store.conn.handle()),
                )
                .await;
            return Err(BrokerError::NoSession);
        }
        let stored =
            stored.ok_or_else(|| BrokerError::internal("a consent just stored is gone"))?;
        OffsetDateTime::parse(&stored, &Rfc3339).map_err(corrupt)
    }

    async fn consent(
        &self,
        id: SessionId,
        user: UserId,
    ) -> Result<Option<OffsetDateTime>, BrokerError> {
        let store = &self.store;
        let hget = redis::cmd("HGET")
            .arg(store.keys.consents(id))
            .arg(user.to_string())
            .to_owned();
        let hget = &hget;
        let stored: Option<String> = store
            .conn
            .read(|mut conn| async move { hget.query_async(&mut conn).await })
            .await?;
        stored
            .map(|s| OffsetDateTime::parse(&s, &Rfc3339).map_err(corrupt))
            .transpose()
    }

    async fn scrub(&self, id: SessionId) -> Result<(), BrokerError> {
        self.committer
            .submit(id, &system_actor(), Command::Scrub)
            .await?;
        let store = &self.store;
        // The staff events of the log hold what the scrub removed; resuming clients then get a
        // snapshot (the head is past an empty stream).
        let _: i64 = store
            .conn
            .call(
                redis::cmd("DEL")
                    .arg(store.keys.consents(id))
                    .arg(store.keys.events(id))
                    .query_async(&mut store.conn.handle()),
            )
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id: SessionId) -> Result<(), BrokerError> {
        let store = &self.store;
        let hkeys = redis::cmd("HKEYS").arg(store.keys.qstate(id)).to_owned();
        let hkeys = &hkeys;
        let questions: Vec<u64> = store
            .conn
            .read(|mut conn| async move { hkeys.query_async(&mut conn).await })
            .await?;
        let keys = &store.keys;
        let mut del = redis::cmd("DEL");
        del.arg(keys.meta(id))
            .arg(keys.session(id))
            .arg(keys.questions(id))
            .arg(keys.qstate(id))
            .arg(keys.changed(id))
            .arg(keys.dirty(id))
            .arg(keys.events(id))
            .arg(keys.viewers(id))
            .arg(keys.video(id))
            .arg(keys.consents(id));
        for q in questions {
            del.arg(keys.voters(id, q));
        }
        // `meta` goes first in the same command: a commit racing this finds no session.
        let deleted: i64 = store
            .conn
            .call(del.query_async(&mut store.conn.handle()))
            .await?;
        let _: i64 = store
            .conn
            .call(
                redis::cmd("SREM")
                    .arg(keys.sessions())
                    .arg(id.to_string())
                    .query_async(&mut store.conn.handle()),
            )
            .await?;
        self.committer.forget(id);
        if deleted == 0 {
            return Err(BrokerError::NoSession);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.store.conn.ready().await
    }
}
