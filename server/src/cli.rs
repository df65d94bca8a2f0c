//! Command line and environment: one struct per command, and the one conversion from the
//! flags of `serve` to the typed [`Config`]. Defaults come from [`Config::default`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use oncolive_signaling::{TurnAuth, TurnSecret};

use crate::config::{self, BrokerConfig, Config, IceServer, Limits, RelayConfig};
use crate::files;
use crate::model::Role;

pub use crate::cli_media::MediaArgs;
pub use crate::cli_privacy::PrivacyArgs;

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
    /// The HMAC secret for tokens (at least 16 bytes). Never logged. Prefer --secret-file or
    /// the environment: `ps` shows every process's arguments.
    #[arg(long, env = "ONCOLIVE_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A file holding the HMAC secret (one line), instead of --secret.
    #[arg(long, env = "ONCOLIVE_SECRET_FILE", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,
}

impl Common {
    /// The secret given on the command line, in the environment or in `--secret-file`.
    pub fn secret(&self) -> anyhow::Result<Option<String>> {
        match &self.secret_file {
            Some(path) => files::read_secret(path, "the token secret").map(Some),
            None => Ok(self.secret.clone()),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// Address to listen on.
    #[arg(long, env = "ONCOLIVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The address patients use, for the links handed out (default: http://LISTEN).
    #[arg(long, env = "ONCOLIVE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where the other nodes on the same Redis reach this node's HTTP port to pull a broadcast
    /// it receives, e.g. `http://10.0.0.5:8080` (default: http://LISTEN unless LISTEN is
    /// 0.0.0.0 or [::], which name no address another node can use).
    #[arg(long, env = "ONCOLIVE_NODE_URL")]
    pub node_url: Option<String>,
    /// Redis URL (`redis://host:port`, or `redis+cluster://h1:p1,h2:p2` for a Redis Cluster);
    /// without it the in-memory broker is used.
    #[arg(long, env = "ONCOLIVE_REDIS_URL")]
    pub redis: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "ONCOLIVE_REDIS_PREFIX", default_value = "oncolive")]
    pub redis_prefix: String,
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
    /// Shared secret of the TURN servers (coturn's static-auth-secret); each client gets a
    /// credential minted from it. Prefer --turn-secret-file: arguments show in `ps`.
    #[arg(long, env = "ONCOLIVE_TURN_SECRET", hide_env_values = true, value_parser = parse_turn_secret, conflicts_with = "turn_secret_file")]
    pub turn_secret: Option<TurnSecret>,
    /// File holding the TURN shared secret (a trailing newline is ignored).
    #[arg(long, env = "ONCOLIVE_TURN_SECRET_FILE", value_parser = read_turn_secret)]
    pub turn_secret_file: Option<TurnSecret>,
    /// Lifetime of a minted TURN credential, in seconds (it must outlast a viewing: TURN
    /// allocations are refreshed with the same credential).
    #[arg(long, env = "ONCOLIVE_TURN_TTL_SECS", default_value_t = TurnAuth::DEFAULT_TTL.as_secs())]
    pub turn_ttl_secs: u64,
    /// Most simultaneous video viewers one link (token) may hold on this node; more get 429.
    #[arg(long, env = "ONCOLIVE_MAX_VIEWERS_PER_TOKEN", default_value_t = RelayConfig::default().max_viewers_per_token)]
    pub max_viewers_per_token: usize,
    /// Most simultaneous video viewers from one client address (IPv6 by /64) on this node; 429.
    #[arg(long, env = "ONCOLIVE_MAX_VIEWERS_PER_ADDRESS", default_value_t = RelayConfig::default().max_viewers_per_address)]
    pub max_viewers_per_address: usize,
    /// Most simultaneous video viewers of one session on this node; more get 503.
    #[arg(long, env = "ONCOLIVE_MAX_VIEWERS_PER_SESSION", default_value_t = RelayConfig::default().max_viewers_per_session)]
    pub max_viewers_per_session: usize,
    /// Days after its first issue that a token can still be refreshed.
    #[arg(long, env = "ONCOLIVE_TOKEN_MAX_AGE_DAYS", default_value_t = Config::default().token_max_age.as_secs() / 86_400)]
    pub token_max_age_days: u64,
    /// A file holding the whole Redis URL (which may carry a password), instead of --redis.
    #[arg(long, env = "ONCOLIVE_REDIS_URL_FILE", conflicts_with = "redis")]
    pub redis_url_file: Option<PathBuf>,
    /// A file holding the Redis password, put into the Redis URL (which then must have none).
    #[arg(long, env = "ONCOLIVE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// Questions per minute from one client address (IPv6 by /64), over all its patient tokens.
    #[arg(long, env = "ONCOLIVE_ASKS_PER_MINUTE_PER_ADDRESS", default_value_t = Limits::default().asks_per_minute_per_address)]
    pub asks_per_minute_per_address: u32,
    /// Questions per second into one session from all its patients, sustained (bursts of 5x).
    #[arg(long, env = "ONCOLIVE_ASKS_PER_SECOND_PER_SESSION", default_value_t = Limits::default().asks_per_second_per_session)]
    pub asks_per_second_per_session: u32,
    /// Most questions a session keeps; later asks are refused with `conflict`.
    #[arg(long, env = "ONCOLIVE_MAX_QUESTIONS", default_value_t = Limits::default().max_questions)]
    pub max_questions: usize,
    /// Most questions waiting for a moderator in a session; later asks are refused with `conflict`.
    #[arg(long, env = "ONCOLIVE_MAX_PENDING", default_value_t = Limits::default().max_pending)]
    pub max_pending: usize,
    /// Of --max-connections, the WebSocket slots only staff (expert, moderators, admins) may use.
    #[arg(long, env = "ONCOLIVE_STAFF_CONNECTIONS", default_value_t = Limits::default().staff_connections)]
    pub staff_connections: usize,
    /// Most WebSockets one patient token may hold open on a node (429 beyond).
    #[arg(long, env = "ONCOLIVE_CONNECTIONS_PER_TOKEN", default_value_t = Limits::default().connections_per_token)]
    pub connections_per_token: usize,
    /// Most patient WebSockets from one client address (IPv6 by /64) on a node (429 beyond).
    #[arg(long, env = "ONCOLIVE_CONNECTIONS_PER_ADDRESS", default_value_t = Limits::default().connections_per_address)]
    pub connections_per_address: usize,
    /// Most TCP connections from one peer address (IPv6 by /64); more are closed at accept.
    #[arg(long, env = "ONCOLIVE_TCP_PER_ADDRESS", default_value_t = Limits::default().tcp_per_address)]
    pub tcp_per_address: usize,
    /// Seconds a client has to finish a request's headers once it started sending them.
    #[arg(long, env = "ONCOLIVE_HEADER_READ_TIMEOUT_SECS", default_value_t = Limits::default().header_read_timeout.as_secs())]
    pub header_read_timeout_secs: u64,
    /// Seconds an HTTP connection may sit idle between requests before it is closed.
    #[arg(long, env = "ONCOLIVE_IDLE_TIMEOUT_SECS", default_value_t = Limits::default().idle_timeout.as_secs())]
    pub idle_timeout_secs: u64,
    /// Bytes of questions per snapshot frame (1024 to 262144); larger sessions are sent in parts.
    #[arg(long, env = "ONCOLIVE_SNAPSHOT_PART_BYTES", default_value_t = Config::default().snapshot_part_bytes)]
    pub snapshot_part_bytes: usize,
}

fn parse_turn_secret(s: &str) -> Result<TurnSecret, String> {
    TurnSecret::new(s)
}

fn read_turn_secret(path: &str) -> Result<TurnSecret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    TurnSecret::new(text)
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
    /// For expert and moderator tokens: the session's `links_version` (shown by
    /// `GET /api/sessions/{id}`), which grows each time the host replaces the links.
    #[arg(long, default_value_t = 0)]
    pub links_version: u32,
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
    /// The one conversion from flags to configuration; it reads the secrets given as files.
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config {
            public_url: self.public_url.clone(),
            node_url: self.node_url.clone(),
            data_dir: self.common.data_dir.clone(),
            secret: self.common.secret()?,
            broker: match self.redis_url()? {
                None => BrokerConfig::Memory,
                Some(url) => BrokerConfig::Redis {
                    url,
                    prefix: self.redis_prefix.clone(),
                    command_timeout: Duration::from_millis(self.redis_timeout_ms),
                },
            },
            history: self.history,
            retention: self.privacy.retention(),
            retention_check: Config::default().retention_check,
            screen: Arc::new(self.privacy.screen()?),
            site: self.privacy.site(),
            media: self.media.config(),
            limits: Limits {
                asks_per_minute: self.asks_per_minute,
                joins_per_second: self.joins_per_second,
                trust_forwarded_for: self.trust_forwarded_for,
                messages_per_second: self.messages_per_second,
                socket_queue: self.socket_queue,
                max_connections: self.max_connections,
                asks_per_minute_per_address: self.asks_per_minute_per_address,
                asks_per_second_per_session: self.asks_per_second_per_session,
                max_questions: self.max_questions,
                max_pending: self.max_pending,
                staff_connections: self.staff_connections,
                connections_per_token: self.connections_per_token,
                connections_per_address: self.connections_per_address,
                tcp_per_address: self.tcp_per_address,
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            },
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            relay: self.relay_config()?,
            token_max_age: Duration::from_secs(self.token_max_age_days.saturating_mul(86_400)),
            snapshot_part_bytes: self.snapshot_part_bytes,
        })
    }

    /// The Redis URL from `--redis` or `--redis-url-file`, with the password of
    /// `--redis-password-file` put in.
    fn redis_url(&self) -> anyhow::Result<Option<String>> {
        let url = match &self.redis_url_file {
            Some(path) => Some(files::read_secret(path, "the Redis URL")?),
            None => self.redis.clone(),
        };
        match (url, &self.redis_password_file) {
            (None, Some(_)) => {
                anyhow::bail!("--redis-password-file needs --redis or --redis-url-file")
            }
            (Some(url), Some(path)) => {
                let password = files::read_secret(path, "the Redis password")?;
                with_password(&url, &password).map(Some)
            }
            (url, None) => Ok(url),
        }
    }

    fn relay_config(&self) -> anyhow::Result<RelayConfig> {
        let ice_servers = if self.ice_servers.is_empty() {
            Vec::new()
        } else {
            vec![IceServer {
                urls: self.ice_servers.clone(),
            }]
        };
        let turn = self
            .turn_secret
            .clone()
            .or_else(|| self.turn_secret_file.clone())
            .map(|secret| TurnAuth {
                secret,
                ttl: Duration::from_secs(self.turn_ttl_secs),
            });
        Ok(RelayConfig {
            udp_port_range: self.rtc_udp_ports,
            public_ips: self.rtc_public_ip.clone(),
            interfaces: self.rtc_interfaces.clone(),
            ice_servers,
            keyframe_min_interval: Duration::from_millis(self.keyframe_interval_ms),
            turn,
            max_viewers_per_token: self.max_viewers_per_token,
            max_viewers_per_address: self.max_viewers_per_address,
            max_viewers_per_session: self.max_viewers_per_session,
            ..RelayConfig::default()
        })
    }
}

/// `url` (`redis://[user@]host…` or `rediss://…`) with `password` in its user part,
/// percent-encoded. A URL that already carries a password is refused: two would be ambiguous.
fn with_password(url: &str, password: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        anyhow::anyhow!("the Redis URL must start with redis://, rediss:// or redis+cluster://")
    })?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (user, host) = match rest[..authority_end].rsplit_once('@') {
        Some((user, _)) if user.contains(':') => {
            anyhow::bail!("the Redis URL already has a password; drop it or --redis-password-file")
        }
        Some((user, _)) => (user, &rest[user.len() + 1..]),
        None => ("", rest),
    };
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from(["oncolive", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(serve) => serve.config(),
            Command::Token(_) => unreachable!("parsed as serve"),
        }
    }

    #[test]
    fn every_secret_can_come_from_a_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).map(|()| path.display().to_string())
        };
        let secret = file("secret", "from-a-file-0123456789abcdef\n")?;
        let turn = file("turn", "turn-shared-secret-0123456789\n")?;
        let url = file("url", "redis://default:s3cret@10.0.0.5:6379/2\n")?;
        let password = file("password", "p@ss/w:rd\n")?;
        let config = serve(&[
            "--secret-file",
            &secret,
            "--ice-server",
            "turn:turn.example.org:3478",
            "--turn-secret-file",
            &turn,
            "--redis-url-file",
            &url,
        ])?;
        assert_eq!(
            config.secret.as_deref(),
            Some("from-a-file-0123456789abcdef")
        );
        assert!(config.relay.turn.is_some(), "the TURN secret was read");
        assert!(matches!(
            &config.broker,
            BrokerConfig::Redis { url, .. } if url == "redis://default:s3cret@10.0.0.5:6379/2"
        ));

        let config = serve(&[
            "--redis",
            "redis://10.0.0.5:6379/2",
            "--redis-password-file",
            &password,
        ])?;
        assert!(matches!(
            &config.broker,
            BrokerConfig::Redis { url, .. } if url == "redis://:p%40ss%2Fw%3Ard@10.0.0.5:6379/2"
        ));
        let config = serve(&[
            "--redis",
            "rediss://app@h:1",
            "--redis-password-file",
            &password,
        ])?;
        assert!(matches!(
            &config.broker,
            BrokerConfig::Redis { url, .. } if url == "rediss://app:p%40ss%2Fw%3Ard@h:1"
        ));
        // A cluster's nodes share the credentials.
        let config = serve(&[
            "--redis",
            "redis+cluster://app@h1:7000,h2:7001",
            "--redis-password-file",
            &password,
        ])?;
        assert!(matches!(
            &config.broker,
            BrokerConfig::Redis { url, .. }
                if url == "redis+cluster://app:p%40ss%2Fw%3Ard@h1:7000,h2:7001"
        ));
        // Two passwords, a missing file, a secret given twice: refused with the reason.
        let twice = serve(&[
            "--redis",
            "redis://u:pw@h:1",
            "--redis-password-file",
            &password,
        ]);
        assert!(format!("{:#}", twice.unwrap_err()).contains("already has a password"));
        let missing = serve(&["--secret-file", "/nonexistent/oncolive-secret"]);
        assert!(format!("{:#}", missing.unwrap_err()).contains("the token secret"));
        assert!(serve(&["--secret", "x", "--secret-file", &secret]).is_err());
        Ok(())
    }

    #[test]
    fn the_maximum_token_age_is_a_flag_in_days() -> anyhow::Result<()> {
        assert_eq!(serve(&[])?.token_max_age, crate::auth::TOKEN_MAX_AGE);
        let config = serve(&["--token-max-age-days", "7"])?;
        assert_eq!(config.token_max_age, Duration::from_secs(7 * 86_400));
        Ok(())
    }
}
