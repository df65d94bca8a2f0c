//! Command line and environment: one struct per command, and the one conversion from the
//! flags of `serve` to the typed [`Config`]. Defaults come from [`Config::default`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, BrokerConfig, Config, IceServer, Limits, RelayConfig};
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
    #[arg(long, env = "ONCOLIVE_DATA_DIR", default_value_os_t = config::default_data_dir())]
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
    /// Hours an ended session is kept (in memory or in Redis) before it is forgotten.
    #[arg(long, env = "ONCOLIVE_RETENTION_HOURS", default_value_t = Config::default().retention.as_secs() / 3600)]
    pub retention_hours: u64,
    /// Milliseconds a Redis command may take before the request fails as `unavailable`.
    #[arg(long, env = "ONCOLIVE_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// Events kept per session for clients that resume.
    #[arg(long, env = "ONCOLIVE_HISTORY", default_value_t = Config::default().history)]
    pub history: usize,
    /// Questions a patient may post per minute.
    #[arg(long, env = "ONCOLIVE_ASKS_PER_MINUTE", default_value_t = Limits::default().asks_per_minute)]
    pub asks_per_minute: u32,
    /// Joins (new patient tokens) per second from one client address, sustained.
    #[arg(long, env = "ONCOLIVE_JOINS_PER_SECOND", default_value_t = Limits::default().joins_per_second)]
    pub joins_per_second: u32,
    /// Take the client's address from the last X-Forwarded-For entry (only behind a proxy that
    /// sets it, and only if clients cannot reach the node directly).
    #[arg(long, env = "ONCOLIVE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Messages per second one socket may send, sustained (bursts of twice that are fine).
    #[arg(long, env = "ONCOLIVE_MESSAGES_PER_SECOND", default_value_t = Limits::default().messages_per_second)]
    pub messages_per_second: u32,
    /// Events a socket may fall behind before it is closed as too slow (4000).
    #[arg(long, env = "ONCOLIVE_SOCKET_QUEUE", default_value_t = Limits::default().socket_queue)]
    pub socket_queue: usize,
    /// Most simultaneous WebSocket connections; more are refused with 503.
    #[arg(long, env = "ONCOLIVE_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// UDP ports for WebRTC media, as MIN-MAX (default: any ephemeral port).
    #[arg(long, env = "ONCOLIVE_RTC_UDP_PORTS", value_parser = parse_port_range)]
    pub rtc_udp_ports: Option<(u16, u16)>,
    /// Public addresses to announce for media behind a 1:1 NAT (comma-separated).
    #[arg(long, env = "ONCOLIVE_RTC_PUBLIC_IP", value_delimiter = ',')]
    pub rtc_public_ip: Vec<std::net::IpAddr>,
    /// Network interfaces to gather media candidates on (comma-separated; default all).
    #[arg(long, env = "ONCOLIVE_RTC_INTERFACES", value_delimiter = ',')]
    pub rtc_interfaces: Vec<String>,
    /// STUN/TURN URLs offered to browsers (comma-separated), e.g. turn:turn.example.org:3478.
    #[arg(
        long = "ice-server",
        env = "ONCOLIVE_ICE_SERVERS",
        value_delimiter = ','
    )]
    pub ice_servers: Vec<String>,
    /// Username for the TURN servers given with --ice-server.
    #[arg(long, env = "ONCOLIVE_TURN_USERNAME")]
    pub turn_username: Option<String>,
    /// Credential for the TURN servers. Never logged.
    #[arg(long, env = "ONCOLIVE_TURN_CREDENTIAL", hide_env_values = true)]
    pub turn_credential: Option<String>,
    /// Least time between two keyframe requests sent to the expert's encoder, in milliseconds.
    #[arg(long, env = "ONCOLIVE_KEYFRAME_INTERVAL_MS", default_value_t = RelayConfig::default().keyframe_min_interval.as_millis() as u64)]
    pub keyframe_interval_ms: u64,
    /// Seconds between the server's WebSocket pings; a socket silent for 2.4 times this is closed (4009).
    #[arg(long, env = "ONCOLIVE_PING_INTERVAL_SECS", default_value_t = Config::default().ping_interval.as_secs())]
    pub ping_interval_secs: u64,
    /// Create a demo session at start and print its links.
    #[arg(long)]
    pub demo: bool,
    /// Write the listening URL (and demo tokens) as JSON to this file once ready (for tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "ONCOLIVE_LOG_JSON")]
    pub log_json: bool,
    /// Bytes of questions per snapshot frame (1024 to 262144); larger sessions are sent in parts.
    #[arg(long, env = "ONCOLIVE_SNAPSHOT_PART_BYTES", default_value_t = Config::default().snapshot_part_bytes)]
    pub snapshot_part_bytes: usize,
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

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s}"))?;
    let lo: u16 = lo.trim().parse().map_err(|e| format!("{lo}: {e}"))?;
    let hi: u16 = hi.trim().parse().map_err(|e| format!("{hi}: {e}"))?;
    if lo == 0 || lo > hi {
        return Err(format!("{s} is not a port range"));
    }
    Ok((lo, hi))
}

impl ServeArgs {
    /// The one conversion from flags to configuration.
    pub fn config(&self) -> Config {
        Config {
            public_url: self.public_url.clone(),
            data_dir: self.common.data_dir.clone(),
            secret: self.common.secret.clone(),
            broker: match &self.redis {
                None => BrokerConfig::Memory,
                Some(url) => BrokerConfig::Redis {
                    url: url.clone(),
                    prefix: self.redis_prefix.clone(),
                    command_timeout: Duration::from_millis(self.redis_timeout_ms),
                },
            },
            history: self.history,
            retention: Duration::from_secs(self.retention_hours.saturating_mul(3600)),
            limits: Limits {
                asks_per_minute: self.asks_per_minute,
                joins_per_second: self.joins_per_second,
                trust_forwarded_for: self.trust_forwarded_for,
                messages_per_second: self.messages_per_second,
                socket_queue: self.socket_queue,
                max_connections: self.max_connections,
            },
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            relay: self.relay_config(),
            snapshot_part_bytes: self.snapshot_part_bytes,
        }
    }

    fn relay_config(&self) -> RelayConfig {
        let (stun, turn): (Vec<String>, Vec<String>) = self
            .ice_servers
            .iter()
            .cloned()
            .partition(|u| u.starts_with("stun:"));
        let mut ice_servers = Vec::new();
        if !stun.is_empty() {
            ice_servers.push(IceServer {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        if !turn.is_empty() {
            ice_servers.push(IceServer {
                urls: turn,
                username: self.turn_username.clone(),
                credential: self.turn_credential.clone(),
            });
        }
        RelayConfig {
            udp_port_range: self.rtc_udp_ports,
            public_ips: self.rtc_public_ip.clone(),
            interfaces: self.rtc_interfaces.clone(),
            ice_servers,
            keyframe_min_interval: Duration::from_millis(self.keyframe_interval_ms),
            ..RelayConfig::default()
        }
    }
}
