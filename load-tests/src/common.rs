//! What every scenario needs: a monotonic clock shared by all tasks, `/proc` readings, latency
//! summaries, and the HTTP/WebSocket calls of the public API.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use oncolive_server::model::SessionId;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

pub type Ws = WebSocketStream<TcpStream>;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process. Every task of a run shares this clock, so a
/// time written into a message by one task can be subtracted from another task's `now_ns`.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A histogram of durations in microseconds, 1 µs .. 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Percentiles of a histogram in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record((ns / 1000).clamp(1, 600_000_000));
}

/// CPU time and resident memory of a process, from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    pub cpu_s: f64,
    pub rss_kib: u64,
}

/// Linux reports CPU times in clock ticks; 100 per second on every architecture we run on
/// (`getconf CLK_TCK`).
const CLOCK_TICKS: f64 = 100.0;

pub fn proc_sample(pid: Option<u32>) -> anyhow::Result<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).with_context(|| dir.clone())?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ... utime(11) stime(12).
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()? as f64)
    };
    let cpu_s = (ticks(11)? + ticks(12)?) / CLOCK_TICKS;
    let status = std::fs::read_to_string(format!("{dir}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(ProcSample { cpu_s, rss_kib })
}

/// The sum over several processes (the nodes of a multi-node run).
pub fn proc_samples(pids: &[u32]) -> ProcSample {
    let mut total = ProcSample::default();
    for pid in pids {
        if let Ok(s) = proc_sample(Some(*pid)) {
            total.cpu_s += s.cpu_s;
            total.rss_kib += s.rss_kib;
        }
    }
    total
}

/// The public HTTP API, as a client sees it.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

/// What `POST /api/sessions` returns that the load generator uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    pub session: oncolive_server::model::Session,
    pub tokens: StaffTokens,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StaffTokens {
    pub expert: String,
    pub moderator: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Joined {
    pub token: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .build()
                .unwrap_or_default(),
        }
    }

    pub async fn create_session(&self, admin: &str, title: &str) -> anyhow::Result<Created> {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?;
        let body = json!({
            "title": title,
            "topic": "load test",
            "expert_name": "Dr. Load",
            "scheduled_start": now,
            "moderation": "pre",
        });
        let response = self
            .http
            .post(format!("{}/api/sessions", self.base))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!("create session: {status}: {}", response.text().await?);
        }
        Ok(response.json().await?)
    }

    pub async fn set_state(
        &self,
        session: SessionId,
        token: &str,
        state: &str,
    ) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/api/sessions/{session}/state", self.base))
            .bearer_auth(token)
            .json(&json!({ "state": state }))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            bail!("set state {state}: {status}: {}", response.text().await?);
        }
        Ok(())
    }

    pub async fn join(&self, session: SessionId, name: &str) -> anyhow::Result<Joined> {
        let response = self
            .http
            .post(format!("{}/api/sessions/{session}/join", self.base))
            .json(&json!({ "name": name }))
            .send()
            .await?;
        let status = response.status();
        if status != reqwest::StatusCode::CREATED {
            bail!("join: {status}: {}", response.text().await?);
        }
        Ok(response.json().await?)
    }
}

/// `host:port` of an `http://host:port` base URL.
pub fn socket_addr(base: &str) -> anyhow::Result<SocketAddr> {
    let host = base
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    host.parse()
        .with_context(|| format!("{base}: expected http://IP:PORT"))
}

/// Options of one WebSocket client connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct WsOptions {
    /// Source address (several 127.0.0.x give more than ~28k ephemeral ports).
    pub source: Option<IpAddr>,
    /// Kernel receive buffer, to make a stalled client fill up quickly.
    pub recv_buffer: Option<u32>,
}

/// Opens the session's hub socket with the token (and `since` when resuming).
pub async fn ws_connect(
    base: &str,
    session: SessionId,
    token: &str,
    since: Option<u64>,
    options: WsOptions,
) -> anyhow::Result<Ws> {
    let addr = socket_addr(base)?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = options.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    if let Some(size) = options.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(20), socket.connect(addr))
        .await
        .context("TCP connect timed out")??;
    stream.set_nodelay(true)?;
    let mut url = format!("ws://{addr}/api/sessions/{session}/ws?token={token}");
    if let Some(since) = since {
        url.push_str(&format!("&since={since}"));
    }
    // Small buffers: thousands of clients share this process.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(20),
        client_async_with_config(url.into_client_request()?, stream, Some(config)),
    )
    .await
    .context("WebSocket handshake timed out")??;
    Ok(ws)
}

/// Raises this process's open-file limit to the hard limit (needs no privilege).
pub fn raise_fd_limit() {
    // Without libc (unsafe is forbidden here) the shell's `ulimit -n` is the way; report it.
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(line) = limits.lines().find(|l| l.starts_with("Max open files"))
    {
        let soft: Option<u64> = line.split_whitespace().nth(3).and_then(|v| v.parse().ok());
        if soft.is_some_and(|s| s < 20_000) {
            eprintln!("note: {line}; run `ulimit -n 20000` first for large runs");
        }
    }
}

/// A 64-bit mix (splitmix64 finaliser) so sums of mixed sequence numbers fingerprint a set.
pub fn mix(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
