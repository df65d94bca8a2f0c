//! This node's readers of session logs. On one Redis, a single task waits with `XREAD BLOCK` on
//! the streams of every session this node has clients for and hands each event, decoded once, to
//! that session's broadcast channel.
//!
//! A blocking read occupies its connection, so the reader has a connection of its own; a new
//! subscription cuts the current wait short with `CLIENT UNBLOCK` from the shared connection.
//!
//! On a Redis Cluster one `XREAD` cannot name streams of different hash slots, and the sessions'
//! streams are spread over all of them; so each session followed gets a [`StreamReader`] of its
//! own, blocking on a connection of its own to the master that serves the session's slot. A node
//! has one such connection per session it has clients for (not per client).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, ServerErrorKind};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::codec::decode_event;
use super::connection::host_port;
use super::keys::Keys;
use crate::broker::lock;
use crate::model::SessionId;
use crate::protocol::Event;

/// Live events buffered per session for the hub's pump; a pump further behind replays.
const LIVE_CAPACITY: usize = 4096;
/// Entries read per stream and round; a longer backlog is read over several rounds.
const READ_COUNT: usize = 512;
/// The longest wait between reconnection attempts while Redis is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The sessions this node reads, shared by the broker (which adds them) and the reader task
/// (which reads them and drops those nobody listens to any more).
#[derive(Default)]
pub struct Feeds {
    /// A std mutex: held only to copy positions or hand out events, never across an await.
    map: Mutex<HashMap<SessionId, Feed>>,
    /// Wakes a reader that has nothing to read when a first session is added.
    wake: Notify,
    /// `CLIENT ID` of the reader's connection, 0 while it has none.
    reader: AtomicU64,
}

struct Feed {
    tx: broadcast::Sender<Arc<Event>>,
    /// The last event handed to `tx`: the reader's position in the stream.
    last: u64,
}

impl Feeds {
    /// A receiver of the session's events after `head` (at least). Returns whether the session
    /// is new to the reader, which must then be woken.
    pub fn subscribe(&self, id: SessionId, head: u64) -> (broadcast::Receiver<Arc<Event>>, bool) {
        let mut map = lock(&self.map);
        if let Some(feed) = map.get(&id) {
            // The reader stands at or before `head` of this call and hands on every event after
            // its position, so nothing stored after we return is missed.
            return (feed.tx.subscribe(), false);
        }
        let (tx, rx) = broadcast::channel(LIVE_CAPACITY);
        map.insert(id, Feed { tx, last: head });
        drop(map);
        self.wake.notify_one();
        (rx, true)
    }

    /// The reader's connection, for `CLIENT UNBLOCK`.
    pub fn reader_client(&self) -> Option<u64> {
        match self.reader.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// The sessions to read and where, forgetting those without receivers.
    fn targets(&self) -> Vec<(SessionId, u64)> {
        let mut map = lock(&self.map);
        map.retain(|_, feed| feed.tx.receiver_count() > 0);
        map.iter().map(|(id, feed)| (*id, feed.last)).collect()
    }

    /// Where to read the session from, or `None` (forgetting the session) if nobody listens.
    fn position(&self, id: SessionId) -> Option<u64> {
        let mut map = lock(&self.map);
        match map.get(&id) {
            Some(feed) if feed.tx.receiver_count() > 0 => Some(feed.last),
            _ => {
                map.remove(&id);
                None
            }
        }
    }

    fn deliver(&self, id: SessionId, events: Vec<Event>) {
        let mut map = lock(&self.map);
        let Some(feed) = map.get_mut(&id) else {
            return;
        };
        for event in events {
            if event.seq > feed.last {
                feed.last = event.seq;
                // No receiver left is fine: the next round forgets the session.
                let _ = feed.tx.send(Arc::new(event));
            }
        }
    }
}

pub struct Reader {
    pub client: redis::Client,
    pub keys: Keys,
    pub feeds: Arc<Feeds>,
    pub block: Duration,
    pub timeout: Duration,
}

impl Reader {
    /// Reads until `stop` fires. Survives Redis going away: it reconnects with a backoff and
    /// goes on from each session's last event, so nothing stored meanwhile is skipped.
    pub async fn run(self, stop: CancellationToken) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut failures: u32 = 0;
        loop {
            let targets = self.feeds.targets();
            if targets.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.feeds.wake.notified() => continue,
                }
            }
            let result = tokio::select! {
                _ = stop.cancelled() => break,
                result = self.round(&mut conn, &targets) => result,
            };
            match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!("session reader reconnected to Redis");
                    }
                    failures = 0;
                }
                Err(e) => {
                    conn = None;
                    self.feeds.reader.store(0, Ordering::Relaxed);
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(error = %e, "session reader lost Redis; retrying");
                    }
                    let backoff = Duration::from_millis(100u64 << failures.min(5)).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        self.feeds.reader.store(0, Ordering::Relaxed);
    }

    async fn round(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        targets: &[(SessionId, u64)],
    ) -> redis::RedisResult<()> {
        let conn = match conn {
            Some(conn) => conn,
            None => conn.insert(self.connect().await?),
        };
        let mut by_key = HashMap::with_capacity(targets.len());
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(self.block.as_millis() as u64)
            .arg("STREAMS");
        for (id, _) in targets {
            let key = self.keys.events(*id);
            xread.arg(&key);
            by_key.insert(key, *id);
        }
        for (_, last) in targets {
            xread.arg(format!("{last}-0"));
        }
        let reply: Option<StreamReadReply> = xread.query_async(conn).await?;
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            if let Some(&id) = by_key.get(&stream.key) {
                self.feeds.deliver(id, decode_events(id, &stream.ids));
            }
        }
        Ok(())
    }

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.block + self.timeout));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let id: u64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await?;
        self.feeds.reader.store(id, Ordering::Relaxed);
        Ok(conn)
    }
}

fn decode_events(id: SessionId, entries: &[redis::streams::StreamId]) -> Vec<Event> {
    entries
        .iter()
        .filter_map(|entry| {
            decode_event(entry)
                .inspect_err(|e| tracing::error!(session = %id, error = %e, "skipping a bad event"))
                .ok()
        })
        .collect()
}

/// Redirects followed in a row before a read counts as failed (a slot moves once per
/// resharding step; more means the cluster is still settling).
const MAX_REDIRECTS: u32 = 5;

/// On a Redis Cluster: follows one session's stream until nobody on this node listens.
pub struct StreamReader {
    pub id: SessionId,
    /// The nodes the URL names: where to ask first, and again after losing the slot's master.
    pub nodes: Arc<[ConnectionInfo]>,
    pub keys: Keys,
    pub feeds: Arc<Feeds>,
    pub block: Duration,
    pub timeout: Duration,
}

impl StreamReader {
    /// Reads until nobody listens or `stop` fires. Survives the slot's master going away or the
    /// slot moving: it asks the cluster again (any node redirects it to the slot's master) and
    /// goes on from the session's last event.
    pub async fn run(self, stop: CancellationToken) {
        let key = self.keys.events(self.id);
        // The slot's master as last learned, and a connection to it.
        let mut master: Option<ConnectionInfo> = None;
        let mut conn: Option<MultiplexedConnection> = None;
        let mut failures: u32 = 0;
        let mut redirects: u32 = 0;
        let mut next_seed = 0;
        while let Some(last) = self.feeds.position(self.id) {
            let read = async {
                let conn = match &mut conn {
                    Some(conn) => conn,
                    None => {
                        let node = master.clone().unwrap_or_else(|| {
                            next_seed = (next_seed + 1) % self.nodes.len();
                            self.nodes[next_seed].clone()
                        });
                        conn.insert(self.connect(node).await?)
                    }
                };
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("BLOCK")
                    .arg(self.block.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(format!("{last}-0"))
                    .query_async::<Option<StreamReadReply>>(conn)
                    .await
            };
            let result = tokio::select! {
                _ = stop.cancelled() => break,
                result = read => result,
            };
            match result {
                Ok(reply) => {
                    if failures > 0 {
                        tracing::info!(session = %self.id, "stream reader reconnected to Redis");
                    }
                    (failures, redirects) = (0, 0);
                    for stream in reply.map(|r| r.keys).unwrap_or_default() {
                        self.feeds
                            .deliver(self.id, decode_events(self.id, &stream.ids));
                    }
                }
                Err(e)
                    if e.kind() == ErrorKind::Server(ServerErrorKind::Moved)
                        && redirects < MAX_REDIRECTS =>
                {
                    redirects += 1;
                    conn = None;
                    master = e.redirect_node().and_then(|(node, _)| host_port(node)).map(
                        |(host, port)| {
                            self.nodes[0]
                                .clone()
                                .set_addr(ConnectionAddr::Tcp(host, port))
                        },
                    );
                }
                Err(e) => {
                    (conn, master, redirects) = (None, None, 0);
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(session = %self.id, error = %e, "stream reader lost Redis; retrying");
                    }
                    let backoff = Duration::from_millis(100u64 << failures.min(5)).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }

    async fn connect(&self, node: ConnectionInfo) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.block + self.timeout));
        redis::Client::open(node)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}
