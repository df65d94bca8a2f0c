//! The Redis broker: any number of `oncolive` nodes on one Redis act as one service.
//!
//! - Each session's events are one Redis Stream whose entry ids are the events' `seq`, handed
//!   out by the same script that appends them, so every node agrees on one order and a client
//!   may resume on any node.
//! - Commands other than votes run through the same rules as everywhere ([`SessionData::apply`])
//!   on a snapshot read in one script, and are stored by another script only if the session's
//!   `version` has not moved meanwhile (compare-and-set; on a conflict the command is applied
//!   again to fresh state). Only the question records the command touched are written.
//! - Votes never touch the records: a script checks the question is open and adds the voter to
//!   the question's set, so thousands of votes a second cost a few set operations each.
//! - One reader task per node follows the streams of the sessions this node has clients for
//!   (on a Redis Cluster, one per session: see [`reader`]).
//! - On a Redis Cluster (`redis+cluster://` URLs) every script's keys share the session's hash
//!   tag, so each script runs on the one master that serves the session; the `sessions` set is
//!   the only key outside a session, and is only ever used on its own.
//!
//! One file per job:
//! - [`connection`]: the shared connection (to one Redis or a cluster), timeouts, the one retry
//!   reads get, Redis errors as broker errors, readiness;
//! - [`keys`]: every key name (the schema is also in docs/architecture.md, "Redis key schema");
//! - [`scripts`]: one typed call per Lua script (`*.lua` beside this file);
//! - [`codec`]: the stored form of sessions, questions and events, to and from the domain's types;
//! - [`committer`]: queues a session's commands and stores them in batches, one commit each;
//! - [`reader`]: this node's one reader of session logs;
//! - [`broker`]: the [`Broker`](super::Broker) trait on top of all that.
//!
//! [`SessionData::apply`]: crate::domain::SessionData::apply

mod broker;
mod codec;
mod committer;
mod connection;
mod keys;
mod reader;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use redis::ConnectionInfo;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::committer::Committer;
use self::connection::{Connection, Target};
use self::keys::Keys;
use self::reader::{Feeds, Reader, StreamReader};
use self::scripts::Scripts;
use super::{Broker, BrokerError};
use crate::model::SessionId;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or for a Redis Cluster
    /// `redis+cluster://[user:password@]host:port[,host:port…]`. Never logged: it may hold a
    /// password.
    pub url: String,
    /// Prefix of every key, so several deployments (or tests) share one Redis.
    pub prefix: String,
    /// Events kept per session for clients that resume (approximately: `MAXLEN ~`).
    pub history: usize,
    /// The longest a request waits for Redis before failing as unavailable.
    pub command_timeout: Duration,
    /// A node that has not reported its viewers for this long is no longer counted.
    pub presence_ttl: Duration,
    /// How long the reader waits on its streams per round.
    pub block: Duration,
    /// The rules every session follows (caps, the screen).
    pub rules: crate::domain::Rules,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "oncolive".into(),
            history: 10_000,
            command_timeout: Duration::from_secs(2),
            presence_ttl: Duration::from_secs(10),
            block: Duration::from_secs(1),
            rules: crate::domain::Rules::default(),
        }
    }
}

/// What the broker's parts share: how to reach Redis and what to call things there.
struct Store {
    conn: Connection,
    keys: Keys,
    config: RedisConfig,
    scripts: Scripts,
}

pub struct RedisBroker {
    store: Arc<Store>,
    committer: Arc<Committer>,
    feeds: Arc<Feeds>,
    readers: Readers,
    /// Stops the reader tasks.
    stop: CancellationToken,
    /// Stops the reader tasks with the broker.
    _stop: DropGuard,
}

/// How this node follows the sessions' logs (see [`reader`]).
enum Readers {
    /// One Redis: one reader for every stream, started with the broker.
    One,
    /// A Redis Cluster: one reader per stream, started with the session's first subscriber.
    PerStream(Arc<[ConnectionInfo]>),
}

impl RedisBroker {
    /// Sets up the connections and starts this node's reader. Redis need not be up yet:
    /// requests fail as unavailable until it is.
    pub async fn connect(config: RedisConfig) -> Result<RedisBroker, BrokerError> {
        let (conn, target) = Connection::open(&config.url, config.command_timeout)?;
        let keys = Keys::new(&config.prefix);
        let feeds = Arc::new(Feeds::default());
        let stop = CancellationToken::new();
        let readers = match target {
            Target::Single(client) => {
                let reader = Reader {
                    client,
                    keys: keys.clone(),
                    feeds: feeds.clone(),
                    block: config.block,
                    timeout: config.command_timeout,
                };
                tokio::spawn(reader.run(stop.clone()));
                Readers::One
            }
            Target::Cluster(nodes) => Readers::PerStream(nodes.into()),
        };
        let store = Arc::new(Store {
            conn,
            keys,
            config,
            scripts: Scripts::new(),
        });
        let broker = RedisBroker {
            committer: Arc::new(Committer::new(store.clone())),
            store,
            feeds,
            readers,
            stop: stop.clone(),
            _stop: stop.drop_guard(),
        };
        if let Err(e) = Broker::ping(&broker).await {
            tracing::warn!(error = %e, "Redis does not answer yet; requests fail until it does");
        }
        Ok(broker)
    }
}

impl RedisBroker {
    /// Starts reading a session's log, which this node had no subscriber for.
    async fn follow(&self, id: SessionId) {
        match &self.readers {
            Readers::One => {
                // Cut the reader's current wait short so it reads this stream too. If this
                // fails, it still does after at most one block interval.
                if let Some(reader) = self.feeds.reader_client() {
                    let conn = &self.store.conn;
                    let _ = conn
                        .call::<i64>(
                            redis::cmd("CLIENT")
                                .arg("UNBLOCK")
                                .arg(reader)
                                .query_async(&mut conn.handle()),
                        )
                        .await;
                }
            }
            Readers::PerStream(nodes) => {
                let reader = StreamReader {
                    id,
                    nodes: nodes.clone(),
                    keys: self.store.keys.clone(),
                    feeds: self.feeds.clone(),
                    block: self.store.config.block,
                    timeout: self.store.config.command_timeout,
                };
                tokio::spawn(reader.run(self.stop.clone()));
            }
        }
    }
}

/// A failure and what the broker was doing when it happened.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
struct Failed {
    context: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn failed(
    context: &'static str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> super::Cause {
    Arc::new(Failed {
        context,
        source: source.into(),
    })
}

/// What Redis holds for a session cannot be read: a bug or a hand-edited key, worth a loud log.
fn corrupt(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BrokerError {
    let cause = failed("unreadable session data", e);
    tracing::error!(error = %cause, "unreadable session data in Redis");
    BrokerError::Internal(cause)
}
