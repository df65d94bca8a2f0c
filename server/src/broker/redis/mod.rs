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
//! - One reader task per node follows the streams of the sessions this node has clients for.
//!
//! One file per job:
//! - [`connection`]: the shared connection, timeouts, the one retry reads get, Redis errors as
//!   broker errors;
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

use tokio_util::sync::{CancellationToken, DropGuard};

use self::committer::Committer;
use self::connection::Connection;
use self::keys::Keys;
use self::reader::{Feeds, Reader};
use self::scripts::Scripts;
use super::{Broker, BrokerError};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`. Never logged: it may hold a password.
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
    /// Stops the reader task with the broker.
    _reader: DropGuard,
}

impl RedisBroker {
    /// Sets up the connections and starts this node's reader. Redis need not be up yet:
    /// requests fail as unavailable until it is.
    pub async fn connect(config: RedisConfig) -> Result<RedisBroker, BrokerError> {
        let (conn, client) = Connection::open(&config.url, config.command_timeout)?;
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
            _reader: stop.drop_guard(),
        };
        if let Err(e) = Broker::ping(&broker).await {
            tracing::warn!(error = %e, "Redis does not answer yet; requests fail until it does");
        }
        Ok(broker)
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
