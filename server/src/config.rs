//! The typed configuration the server starts from. The command line is one way to build it
//! ([`crate::cli`]); tests and the load generator build it directly ([`Config::for_tests`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use oncolive_signaling::{IceServer, RelayConfig};

use crate::domain::{QuestionCaps, Rules};
use crate::screen::Screen;
use crate::site::Site;

/// Everything [`crate::start`] needs besides a listener and a shutdown signal.
#[derive(Clone)]
pub struct Config {
    /// The address patients use, for the links handed out; `None`: `http://` + the bound address.
    pub public_url: Option<String>,
    /// Where the other nodes reach this one's HTTP port to pull a broadcast it receives
    /// (`--node-url`); `None`: `http://` + the bound address unless that is unspecified.
    pub node_url: Option<String>,
    /// Where the generated token secret is kept when [`Config::secret`] is `None`.
    pub data_dir: PathBuf,
    /// The HMAC secret for tokens (at least 16 bytes). Never logged.
    pub secret: Option<String>,
    pub broker: BrokerConfig,
    /// Events kept per session for clients that resume.
    pub history: usize,
    /// How long after a session ends its private data is kept (see docs/privacy.md): pending
    /// and rejected questions, originals, consents, authors. Public questions and answers stay.
    pub retention: Duration,
    /// How often the server looks for sessions past their retention.
    pub retention_check: Duration,
    /// The detector of personal details and blocked words.
    pub screen: Arc<Screen>,
    /// What the pages show of this deployment (`GET /api/site`).
    pub site: Site,
    pub limits: Limits,
    /// Time between the server's pings; a socket silent for 2.4 times this is closed (4009).
    pub ping_interval: Duration,
    pub relay: RelayConfig,
    /// How long after its first issue a token can still be refreshed; past it, the holder must
    /// join again (patients) or get a new link (staff).
    pub token_max_age: Duration,
    /// Bytes of questions per snapshot frame: a larger view goes out as a `snapshot` and
    /// `snapshot_part`s (see [`crate::snapshot`]).
    pub snapshot_part_bytes: usize,
    /// Recordings and library videos.
    pub media: MediaConfig,
}

/// Where recordings and library videos are kept, and for how long.
#[derive(Clone, PartialEq)]
pub struct MediaConfig {
    /// `s3://bucket/prefix` (settings from the AWS_* environment or the URL's query),
    /// `file:///dir` or `memory://`; `None`: `{data_dir}/media`. Logged without its query,
    /// which may hold credentials.
    pub object_store: Option<String>,
    /// Ended recordings beyond this many bytes in all are removed, oldest first; `None`: no bound.
    pub recordings_max_bytes: Option<u64>,
    /// How long after a session ends its recording is kept; `None`: as long as the session's
    /// private data ([`Config::retention`]).
    pub recording_retention: Option<Duration>,
    /// The length the recorder aims at for each segment (cut at the next keyframe).
    pub target_segment: Duration,
}

impl fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaConfig")
            .field(
                "object_store",
                &self.object_store.as_deref().map(|u| u.split('?').next()),
            )
            .field("recordings_max_bytes", &self.recordings_max_bytes)
            .field("recording_retention", &self.recording_retention)
            .field("target_segment", &self.target_segment)
            .finish()
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            object_store: None,
            recordings_max_bytes: None,
            recording_retention: None,
            target_segment: Duration::from_secs(4),
        }
    }
}

/// Where session state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum BrokerConfig {
    /// In this process: one node, nothing else to run.
    Memory,
    /// In Redis (or a Redis Cluster), shared by every node that names it.
    Redis {
        /// `redis://[user:password@]host:port[/db]`, or `redis+cluster://host:port[,host:port…]`
        /// for a Redis Cluster. Never logged: it may hold a password.
        url: String,
        /// Prefix of every key, so several deployments (or tests) share one Redis.
        prefix: String,
        /// The longest a request waits for Redis before failing as `unavailable`.
        command_timeout: Duration,
    },
}

/// What one client, one address or one node may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Questions a patient may post per minute.
    pub asks_per_minute: u32,
    /// Joins (new patient tokens) per second from one client address, sustained; bursts of
    /// five times this are fine.
    pub joins_per_second: u32,
    /// Take the client's address from the last `X-Forwarded-For` entry (only behind a proxy).
    pub trust_forwarded_for: bool,
    /// Messages per second one socket may send, sustained (bursts of twice that are fine).
    pub messages_per_second: u32,
    /// Events a socket may fall behind before it is closed as too slow (4000).
    pub socket_queue: usize,
    /// Most simultaneous WebSocket connections; more are refused with 503.
    pub max_connections: usize,
    /// Questions per minute from one client address (IPv6 by /64), over every token it holds:
    /// joining again gives a new patient budget, not a new address budget.
    pub asks_per_minute_per_address: u32,
    /// Questions per second into one session from all its patients together, sustained
    /// (bursts of five times this are fine). Per node, as the other rates.
    pub asks_per_second_per_session: u32,
    /// Most questions a session keeps, in any state; later asks are refused (`conflict`).
    pub max_questions: usize,
    /// Most questions waiting for a moderator in a session; later asks are refused (`conflict`)
    /// until moderators catch up.
    pub max_pending: usize,
    /// Of [`Limits::max_connections`], the WebSocket slots only staff may take, so moderators
    /// and the expert get in when patients have filled the node.
    pub staff_connections: usize,
    /// Most WebSockets one token may hold open on a node (429 beyond).
    pub connections_per_token: usize,
    /// Most patient WebSockets from one client address (IPv6 by /64) on a node (429 beyond).
    /// Generous: a hospital's Wi-Fi or a carrier's NAT puts many patients behind one address.
    pub connections_per_address: usize,
    /// Most TCP connections one peer address (IPv6 by /64) may hold open; more are closed at
    /// accept, before a byte is read. The TCP peer, not `X-Forwarded-For`: behind a proxy this
    /// counts the proxy's connections.
    pub tcp_per_address: usize,
    /// Time a client has to send a request's headers once it started sending them.
    pub header_read_timeout: Duration,
    /// Time a connection may sit between requests (keep-alive) before it is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            asks_per_minute: 5,
            joins_per_second: 20,
            trust_forwarded_for: false,
            messages_per_second: 20,
            socket_queue: 1024,
            max_connections: 19_000,
            asks_per_minute_per_address: 30,
            asks_per_second_per_session: 20,
            max_questions: QuestionCaps::default().max_questions,
            max_pending: QuestionCaps::default().max_pending,
            staff_connections: 100,
            connections_per_token: 4,
            connections_per_address: 200,
            tcp_per_address: 400,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    pub fn question_caps(&self) -> QuestionCaps {
        QuestionCaps {
            max_questions: self.max_questions,
            max_pending: self.max_pending,
        }
    }

    /// The limits with every rate and size at least the smallest that works.
    fn at_least_workable(self) -> Limits {
        Limits {
            asks_per_minute: self.asks_per_minute.max(1),
            joins_per_second: self.joins_per_second.max(1),
            messages_per_second: self.messages_per_second.max(1),
            socket_queue: self.socket_queue.max(16),
            asks_per_minute_per_address: self.asks_per_minute_per_address.max(1),
            asks_per_second_per_session: self.asks_per_second_per_session.max(1),
            max_questions: self.max_questions.max(1),
            max_pending: self.max_pending.max(1),
            staff_connections: self.staff_connections.min(self.max_connections),
            connections_per_token: self.connections_per_token.max(1),
            connections_per_address: self.connections_per_address.max(1),
            tcp_per_address: self.tcp_per_address.max(2),
            header_read_timeout: self.header_read_timeout.max(Duration::from_millis(100)),
            idle_timeout: self.idle_timeout.max(Duration::from_millis(100)),
            ..self
        }
    }
}

impl Default for Config {
    /// The production defaults (those of `oncolive serve` without flags).
    fn default() -> Self {
        Config {
            public_url: None,
            node_url: None,
            data_dir: default_data_dir(),
            secret: None,
            broker: BrokerConfig::Memory,
            history: 10_000,
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_check: Duration::from_secs(600),
            screen: Arc::default(),
            site: Site::default(),
            limits: Limits::default(),
            ping_interval: Duration::from_secs(25),
            relay: RelayConfig::default(),
            token_max_age: crate::auth::TOKEN_MAX_AGE,
            snapshot_part_bytes: crate::snapshot::DEFAULT_PART_BYTES,
            media: MediaConfig::default(),
        }
    }
}

impl Config {
    /// The rules every session of this deployment follows, whichever broker stores it.
    pub fn rules(&self) -> Rules {
        Rules {
            caps: self.limits.question_caps(),
            screen: self.screen.clone(),
        }
    }

    /// In memory, with a fixed secret (so no data directory is written) and the per-socket and
    /// per-address rates raised, since tests drive many messages through one socket. Tests that
    /// check a limit set it back.
    pub fn for_tests() -> Config {
        Config {
            secret: Some("oncolive-test-secret-0123456789abcdef".into()),
            data_dir: std::env::temp_dir(),
            limits: Limits {
                joins_per_second: 100_000,
                messages_per_second: 100_000,
                asks_per_minute_per_address: 100_000,
                asks_per_second_per_session: 100_000,
                connections_per_token: 10_000,
                connections_per_address: 100_000,
                tcp_per_address: 100_000,
                ..Limits::default()
            },
            // Every test viewer comes from 127.0.0.1.
            relay: RelayConfig {
                max_viewers_per_address: 100_000,
                ..RelayConfig::default()
            },
            // Nothing of one test is seen by another; suites that test a store name one.
            media: MediaConfig {
                object_store: Some("memory://".into()),
                ..MediaConfig::default()
            },
            ..Config::default()
        }
    }

    /// The same configuration with out-of-range values raised to the smallest that works.
    pub fn normalized(self) -> Config {
        Config {
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            node_url: self.node_url.map(|u| u.trim_end_matches('/').to_owned()),
            limits: self.limits.at_least_workable(),
            ping_interval: self.ping_interval.max(Duration::from_secs(1)),
            token_max_age: self.token_max_age.max(Duration::from_secs(3600)),
            relay: RelayConfig {
                keyframe_min_interval: self
                    .relay
                    .keyframe_min_interval
                    .max(Duration::from_millis(50)),
                ..self.relay
            },
            broker: match self.broker {
                BrokerConfig::Redis {
                    url,
                    prefix,
                    command_timeout,
                } => BrokerConfig::Redis {
                    url,
                    prefix,
                    command_timeout: command_timeout.max(Duration::from_millis(100)),
                },
                memory => memory,
            },
            snapshot_part_bytes: self.snapshot_part_bytes.clamp(
                crate::snapshot::MIN_PART_BYTES,
                crate::snapshot::MAX_PART_BYTES,
            ),
            ..self
        }
    }
}

/// Secrets and the Redis URL (which may hold a password) are never printed.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("public_url", &self.public_url)
            .field("node_url", &self.node_url)
            .field("data_dir", &self.data_dir)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("broker", &self.broker)
            .field("history", &self.history)
            .field("retention", &self.retention)
            .field("retention_check", &self.retention_check)
            .field("site", &self.site)
            .field("limits", &self.limits)
            .field("ping_interval", &self.ping_interval)
            .field("relay", &self.relay)
            .field("token_max_age", &self.token_max_age)
            .field("snapshot_part_bytes", &self.snapshot_part_bytes)
            .field("media", &self.media)
            .finish()
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerConfig::Memory => f.write_str("Memory"),
            BrokerConfig::Redis {
                prefix,
                command_timeout,
                ..
            } => f
                .debug_struct("Redis")
                .field("prefix", prefix)
                .field("command_timeout", command_timeout)
                .finish_non_exhaustive(),
        }
    }
}

pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("oncolive")
}
