//! Command line and environment: one struct per command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::model::Role;

#[derive(Debug, Parser)]
#[command(
    name = "oncolive",
    version,
    about = "Live expert Q&A and video for cancer hospitals"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Print a signed token (for operators and OBS set-ups).
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Where the generated secret is kept when ONCOLIVE_SECRET is unset.
    #[arg(long, env = "ONCOLIVE_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// The HMAC secret for tokens (at least 16 bytes). Never logged.
    #[arg(long, env = "ONCOLIVE_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Address to listen on.
    #[arg(long, env = "ONCOLIVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The address patients use, for the links handed out (default: http://LISTEN).
    #[arg(long, env = "ONCOLIVE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Redis URL; without it the in-memory broker is used.
    #[arg(long, env = "ONCOLIVE_REDIS_URL")]
    pub redis: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "ONCOLIVE_REDIS_PREFIX", default_value = "oncolive")]
    pub redis_prefix: String,
    /// Hours an ended session is kept in Redis before it expires.
    #[arg(long, env = "ONCOLIVE_RETENTION_HOURS", default_value_t = 168)]
    pub retention_hours: u64,
    /// Milliseconds a Redis command may take before the request fails as `unavailable`.
    #[arg(long, env = "ONCOLIVE_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// Events kept per session for clients that resume.
    #[arg(long, env = "ONCOLIVE_HISTORY", default_value_t = 10_000)]
    pub history: usize,
    /// Questions a patient may post per minute.
    #[arg(long, env = "ONCOLIVE_ASKS_PER_MINUTE", default_value_t = 5)]
    pub asks_per_minute: u32,
    /// Joins (new patient tokens) per second from one client address, sustained.
    #[arg(long, env = "ONCOLIVE_JOINS_PER_SECOND", default_value_t = 20)]
    pub joins_per_second: u32,
    /// Messages per second one socket may send, sustained (bursts of twice that are fine).
    #[arg(long, env = "ONCOLIVE_MESSAGES_PER_SECOND", default_value_t = 20)]
    pub messages_per_second: u32,
    /// Events a socket may fall behind before it is closed as too slow (4000).
    #[arg(long, env = "ONCOLIVE_SOCKET_QUEUE", default_value_t = 1024)]
    pub socket_queue: usize,
    /// Most simultaneous WebSocket connections; more are refused with 503.
    #[arg(long, env = "ONCOLIVE_MAX_CONNECTIONS", default_value_t = 19_000)]
    pub max_connections: usize,
    /// Create a demo session at start and print its links.
    #[arg(long)]
    pub demo: bool,
    /// Write the listening URL (and demo tokens) as JSON to this file once ready (for tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "ONCOLIVE_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, value_enum)]
    pub role: TokenRole,
    /// The session, for expert and moderator tokens.
    #[arg(long)]
    pub session: Option<uuid::Uuid>,
    /// Lifetime in hours (default: 12 for admin, 720 otherwise).
    #[arg(long)]
    pub ttl_hours: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TokenRole {
    Admin,
    Expert,
    Moderator,
}

impl From<TokenRole> for Role {
    fn from(r: TokenRole) -> Role {
        match r {
            TokenRole::Admin => Role::Admin,
            TokenRole::Expert => Role::Expert,
            TokenRole::Moderator => Role::Moderator,
        }
    }
}

pub const ADMIN_TTL: Duration = Duration::from_secs(12 * 3600);
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("oncolive")
}

/// The settings the running server needs, after parsing.
#[derive(Debug, Clone)]
pub struct Settings {
    pub public_url: String,
    pub history: usize,
    pub asks_per_minute: u32,
    pub joins_per_second: u32,
    pub messages_per_second: u32,
    pub socket_queue: usize,
    pub max_connections: usize,
    /// Seconds between the server's pings; a socket silent for three times this is closed.
    pub ping_interval: Duration,
}

impl Settings {
    pub fn from_args(args: &ServeArgs, bound: SocketAddr) -> Settings {
        Settings {
            public_url: args
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{bound}"))
                .trim_end_matches('/')
                .to_owned(),
            history: args.history,
            asks_per_minute: args.asks_per_minute.max(1),
            joins_per_second: args.joins_per_second.max(1),
            messages_per_second: args.messages_per_second.max(1),
            socket_queue: args.socket_queue.max(16),
            max_connections: args.max_connections,
            ping_interval: Duration::from_secs(25),
        }
    }
}
