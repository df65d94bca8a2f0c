//! What every scenario needs: a monotonic clock shared by all tasks, `/proc` readings, latency
//! summaries. The HTTP and WebSocket clients are the test kit's (`oncolive_testkit`).

use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use hdrhistogram::Histogram;
use oncolive_server::api_types::{Created, StateRequest};
use oncolive_server::model::{Moderation, NewSession, SessionId, SessionState};
use oncolive_testkit::ApiClient;
use oncolive_testkit::api::ws_url;
use oncolive_testkit::hub::connect_socket;
pub use oncolive_testkit::hub::{Socket as Ws, SocketOptions as WsOptions};
use serde::{Deserialize, Serialize};

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

/// Opens the session's hub socket on the server at `base` (`http://IP:PORT`) with `token`,
/// resuming after `since` if given.
pub async fn ws_connect(
    base: &str,
    session: SessionId,
    token: &str,
    since: Option<u64>,
    options: WsOptions,
) -> anyhow::Result<Ws> {
    connect_socket(&ws_url(base, session, token, since), options).await
}

/// A pre-moderated session for a load run, created with the client's admin token.
pub async fn new_session(api: &ApiClient, title: &str) -> anyhow::Result<Created> {
    api.create(&NewSession {
        title: title.into(),
        topic: "load test".into(),
        expert_name: "Dr. Load".into(),
        scheduled_start: time::OffsetDateTime::now_utc(),
        moderation: Moderation::Pre,
        expert_profile: None,
        record: None,
        videos: Vec::new(),
    })
    .await
}

/// Puts the session live; one that already is (a second run on it) is fine.
pub async fn go_live(api: &ApiClient, session: SessionId, token: &str) -> anyhow::Result<()> {
    let path = format!("/api/sessions/{session}/state");
    let body = StateRequest {
        state: SessionState::Live,
    };
    let res = api.post(&path, Some(token), &body).await?;
    let status = res.status();
    if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
        bail!("going live: {status}: {}", res.text().await?);
    }
    Ok(())
}

/// The server configuration of in-process runs (smoke tests, criterion): in memory, with the
/// per-address, per-socket and per-patient limits raised so the load is not refused.
pub fn local_config() -> oncolive_server::Config {
    let test = oncolive_server::Config::for_tests();
    oncolive_server::Config {
        limits: oncolive_server::config::Limits {
            asks_per_minute: 600,
            ..test.limits.clone()
        },
        ..test
    }
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

/// Times approvals one after the other: `moderator` approves each of `pending`, and the time
/// until `patient` receives it approved is one sample. The moderator's ack is read before the
/// next sample. Sorted.
pub async fn approve_latencies(
    moderator: &mut oncolive_testkit::HubClient,
    patient: &mut oncolive_testkit::HubClient,
    pending: &[oncolive_server::model::QuestionId],
) -> anyhow::Result<Vec<std::time::Duration>> {
    use oncolive_server::domain::Command;
    use oncolive_server::model::QuestionStatus;
    use oncolive_server::protocol::ClientMsg;
    let mut samples = Vec::with_capacity(pending.len());
    for (i, q) in pending.iter().copied().enumerate() {
        let started = Instant::now();
        let req = format!("p{i}");
        let approve = Command::Approve {
            question: q,
            text: None,
            original: false,
        };
        moderator
            .send(&ClientMsg::command(req.clone(), approve))
            .await?;
        patient
            .recv_question(|question| {
                question.id == q && question.status == QuestionStatus::Approved
            })
            .await?;
        samples.push(started.elapsed());
        if let Err(e) = moderator.reply_to(&req).await? {
            bail!("approve refused: {e:?}");
        }
    }
    samples.sort();
    Ok(samples)
}

/// The `p` quantile (0..=1) of sorted `samples`, in milliseconds (0 when there are none).
pub fn quantile_ms(samples: &[std::time::Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}
