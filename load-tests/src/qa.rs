//! The Q&A scenario: N patients in one session, asking and voting; moderator bots approve or
//! reject every question, an expert bot marks questions answering and answered.
//!
//! Latencies are carried in the messages themselves: a patient writes `t<ns>` (the shared clock,
//! [`now_ns`]) into the question it asks, a moderator appends `a<ns>` when it approves (approving
//! with an edited text), so every receiver computes its latency without a shared map.
//!
//! Completeness: moderator 0 is the reference. It sees every event of the session (staff see all
//! audiences), so its `seq`s must be contiguous; the public ones among them are what every patient
//! must receive, exactly once and in increasing order, from the moment it connected. Each patient
//! keeps only a count and a sum of mixed `seq`s (a fingerprint of the set) plus an order check, so
//! 10,000 patients cost a few bytes each; the expected fingerprint of any window comes from prefix
//! sums over the reference's list.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oncolive_server::domain::Command;
use oncolive_server::model::{QuestionStatus, SessionId};
use oncolive_server::protocol::{ClientMsg, ErrorCode, Request, ServerMsg, Snapshot};
use oncolive_testkit::ApiClient;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::common::{
    ProcSample, Summary, Ws, WsOptions, go_live, histogram, mix, new_session, now_ns, proc_sample,
    proc_samples, record_ns, ws_connect,
};

/// Everything a Q&A run needs; the command line maps onto it one to one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QaConfig {
    /// Base URLs of the nodes (`http://IP:PORT`); patients are spread over them round-robin.
    pub urls: Vec<String>,
    /// An admin token, to create the session.
    pub admin_token: Option<String>,
    /// An existing session instead (with its moderator and expert tokens).
    pub session: Option<SessionId>,
    pub moderator_token: Option<String>,
    pub expert_token: Option<String>,
    pub patients: usize,
    /// Seconds of the load phase (after every patient connected).
    pub duration_s: f64,
    /// New patient connections per second during the connect phase.
    pub connect_rate: f64,
    /// Questions per second over all patients.
    pub ask_rate: f64,
    /// Votes per second over all patients.
    pub vote_rate: f64,
    /// Share of questions the moderators reject.
    pub reject_ratio: f64,
    /// Moderator connections (each may send only `--messages-per-second` to the server).
    pub moderators: usize,
    /// Seconds between the expert's `answering`/`answered` pairs.
    pub answer_every_s: f64,
    /// Patients that stop reading after their first message (with a 4 KiB receive buffer).
    pub stalled: usize,
    /// Seconds into the load phase when every patient drops its socket and reconnects with
    /// `since`, each after a random delay within `storm_window_s`.
    pub storm_at_s: Option<f64>,
    pub storm_window_s: f64,
    /// Server processes to read CPU and memory from.
    pub server_pids: Vec<u32>,
    /// Source addresses for the patients' sockets (more than ~28k connections need several).
    pub sources: Vec<IpAddr>,
    /// Seconds to wait for the last events to reach every patient at the end.
    pub settle_s: f64,
    pub progress: bool,
}

impl Default for QaConfig {
    fn default() -> Self {
        QaConfig {
            urls: vec![],
            admin_token: None,
            session: None,
            moderator_token: None,
            expert_token: None,
            patients: 100,
            duration_s: 10.0,
            connect_rate: 500.0,
            ask_rate: 5.0,
            vote_rate: 50.0,
            reject_ratio: 0.1,
            moderators: 0,
            answer_every_s: 2.0,
            stalled: 0,
            storm_at_s: None,
            storm_window_s: 10.0,
            server_pids: vec![],
            sources: vec![],
            settle_s: 30.0,
            progress: true,
        }
    }
}

/// The results of a run, as written to `--out`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QaReport {
    pub config: QaConfig,
    pub nodes: usize,
    pub patients_connected: usize,
    pub connect_failures: usize,
    pub connect_errors: Vec<String>,
    /// Connections per second reached in the connect phase.
    pub connect_rate: f64,
    /// `POST /join` + TCP + WebSocket handshake + first message.
    pub connect_latency: Summary,
    pub questions_asked: u64,
    pub approvals: u64,
    pub rejections: u64,
    pub votes_sent: u64,
    /// A patient's `ask` → a moderator receives the pending question.
    pub ask_to_moderator: Summary,
    /// A moderator's `approve` → the last patient to receive the approved question (per question).
    pub approval_to_last: Summary,
    /// A moderator's `approve` → each patient receiving it (per delivery).
    pub approval_to_each: Summary,
    /// Events received by all patients during the load phase, and per second.
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    /// Events of the session (reference view) and how many were public.
    pub events: u64,
    pub public_events: u64,
    /// `votes` events per patient per second (coalescing: a few a second).
    pub vote_updates_per_patient_s: f64,
    pub completeness: Completeness,
    pub stalled: Vec<StalledOutcome>,
    pub storm: Option<StormReport>,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Unexpected closes seen by patients (by close code), each followed by a resume.
    pub unexpected_closes: BTreeMap<String, u64>,
    pub server: ResourceReport,
    pub generator: ResourceReport,
    pub timeline: Vec<TimelinePoint>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Completeness {
    pub checked_patients: usize,
    /// Patients with at least one violation.
    pub patients_with_violations: usize,
    pub missing: u64,
    pub unexpected: u64,
    /// Events at or below a `seq` already received (duplicates or out of order).
    pub out_of_order: u64,
    /// Gaps in the reference's own stream (staff see every event: there must be none).
    pub reference_gaps: u64,
    /// Reconnects answered with a snapshot instead of a resume (not a loss, but no resume).
    pub snapshot_fallbacks: u64,
    pub ok: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StalledOutcome {
    pub dropped: bool,
    pub close_code: Option<u16>,
    pub events_before_stall: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormReport {
    pub window_s: f64,
    pub reconnected: u64,
    pub failed: u64,
    pub resumed: u64,
    pub snapshots: u64,
    /// Successful handshakes / (last handshake done − first drop).
    pub handshakes_per_s: f64,
    /// Drop → `resumed` received, excluding the random delay.
    pub handshake_latency: Summary,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceReport {
    pub cpu_s_load: f64,
    /// CPU seconds per second of the load phase (1.0 = one core busy).
    pub cpu_cores_load: f64,
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_end_kib: u64,
    /// (RSS with every patient connected and idle − RSS before) / patients.
    pub kib_per_idle_patient: f64,
    pub cpu_s_total: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub connected: usize,
    pub deliveries_per_s: f64,
    pub server_cores: f64,
    pub server_rss_kib: u64,
    pub generator_cores: f64,
}

/// Sent to a patient's task by the schedulers.
#[derive(Debug)]
enum Cmd {
    Ask,
    Vote(u64),
    Reconnect { delay: Duration },
}

/// Per-question aggregate of approval latencies, indexed by question id.
#[derive(Default)]
struct Slot {
    deliveries: AtomicU32,
    max_ns: AtomicU64,
}

/// State shared by all tasks of a run. Patients touch only atomics and sharded histograms.
struct Shared {
    session: SessionId,
    connected: AtomicUsize,
    failed: AtomicUsize,
    deliveries: AtomicU64,
    asked: AtomicU64,
    votes: AtomicU64,
    ready: Vec<AtomicBool>,
    /// Highest public `seq` each patient received (for the end-of-run wait).
    last_public: Vec<AtomicU64>,
    slots: Vec<Slot>,
    delivery_hist: Vec<Mutex<Histogram<u64>>>,
    ask_hist: Mutex<Histogram<u64>>,
    connect_hist: Mutex<Histogram<u64>>,
    storm_hist: Mutex<Histogram<u64>>,
    storm_first_drop: AtomicU64,
    storm_last_done: AtomicU64,
    connect_first: AtomicU64,
    connect_last: AtomicU64,
    connect_errors: Mutex<Vec<String>>,
    /// Questions that take votes, newest last (for voters and the expert).
    votable: Mutex<Vec<u64>>,
    /// The reference's highest `seq` and highest public `seq`.
    ref_last: AtomicU64,
    ref_last_public: AtomicU64,
    /// Fires when the load phase ends: no more asks, votes, answers.
    load_over: CancellationToken,
    /// Fires when every socket should close.
    end: CancellationToken,
}

const HIST_SHARDS: usize = 32;

/// What one patient task knows at the end.
#[derive(Debug, Default)]
struct PatientResult {
    connected: bool,
    stalled: bool,
    stalled_outcome: StalledOutcome,
    /// The snapshot `seq` at first connect: the window starts after it.
    start: u64,
    last_any: u64,
    /// Every public `seq` received, in arrival order (4 bytes each: 10,000 patients × 1,000
    /// events is 40 MB, and it makes the check exact).
    public: Vec<u32>,
    out_of_order: u64,
    /// Windows skipped by a snapshot after a reconnect: (after, up_to].
    excluded: Vec<(u64, u64)>,
    votes_events: u64,
    errors: BTreeMap<String, u64>,
    closes: BTreeMap<String, u64>,
    storm: Option<StormOutcome>,
    snapshot_fallbacks: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct StormOutcome {
    ok: bool,
    resumed: bool,
}

/// What a patient reads of each message: enough to check order and measure latency, without
/// building the whole `ServerMsg` (10,000 patients decode every event; this keeps the
/// generator's CPU for the generator). The field names are those of `ServerMsg`.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default, borrow)]
    question: Option<QuestionHead<'a>>,
    #[serde(default)]
    code: Option<ErrorCode>,
}

#[derive(Deserialize)]
struct QuestionHead<'a> {
    status: QuestionStatus,
    #[serde(borrow)]
    text: Cow<'a, str>,
    id: u64,
    /// Present only in the staff view, which the author of a question gets too.
    #[serde(default, borrow)]
    author_id: Option<Cow<'a, str>>,
}

/// The seq of the public event of a change. A change to a public question is logged twice, the
/// public view and then, at the next seq, the staff view (which the author gets as well); the
/// completeness check compares public events, so a staff view stands for the entry before it.
fn public_seq(seq: u64, staff_view_of_public: bool) -> u64 {
    if staff_view_of_public { seq - 1 } else { seq }
}

fn is_public(status: QuestionStatus) -> bool {
    status.is_public(true)
}

/// The `<tag><digits>` number in a question text, e.g. `a123` with tag `a`.
fn stamp(text: &str, tag: char) -> Option<u64> {
    text.split(' ')
        .find_map(|w| w.strip_prefix(tag).and_then(|n| n.parse().ok()))
}

pub async fn run(config: QaConfig) -> anyhow::Result<QaReport> {
    if config.urls.is_empty() {
        bail!("at least one --url");
    }
    now_ns();
    let admin = config.admin_token.clone().unwrap_or_default();
    let apis: Vec<ApiClient> = config
        .urls
        .iter()
        .map(|u| ApiClient::new(u.as_str(), admin.as_str()))
        .collect();
    let (session, moderator_token, expert_token) = match (&config.session, &config.admin_token) {
        (Some(id), _) => (
            *id,
            config
                .moderator_token
                .clone()
                .context("--session needs --moderator-token")?,
            config
                .expert_token
                .clone()
                .context("--session needs --expert-token")?,
        ),
        (None, Some(_)) => {
            let created = new_session(&apis[0], "Load test").await?;
            (
                created.session.id,
                created.tokens.moderator,
                created.tokens.expert,
            )
        }
        (None, None) => bail!("give --admin-token, or --session with staff tokens"),
    };
    go_live(&apis[0], session, &expert_token).await?;

    let max_questions = (config.ask_rate * (config.duration_s + 5.0) * 2.0) as usize + 1024;
    let shared = Arc::new(Shared {
        session,
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        deliveries: AtomicU64::new(0),
        asked: AtomicU64::new(0),
        votes: AtomicU64::new(0),
        ready: (0..config.patients)
            .map(|_| AtomicBool::new(false))
            .collect(),
        last_public: (0..config.patients).map(|_| AtomicU64::new(0)).collect(),
        slots: (0..max_questions).map(|_| Slot::default()).collect(),
        delivery_hist: (0..HIST_SHARDS).map(|_| Mutex::new(histogram())).collect(),
        ask_hist: Mutex::new(histogram()),
        connect_hist: Mutex::new(histogram()),
        storm_hist: Mutex::new(histogram()),
        storm_first_drop: AtomicU64::new(u64::MAX),
        storm_last_done: AtomicU64::new(0),
        connect_first: AtomicU64::new(u64::MAX),
        connect_last: AtomicU64::new(0),
        connect_errors: Mutex::default(),
        votable: Mutex::default(),
        ref_last: AtomicU64::new(0),
        ref_last_public: AtomicU64::new(0),
        load_over: CancellationToken::new(),
        end: CancellationToken::new(),
    });
    let pids = config.server_pids.clone();
    let server_before = proc_samples(&pids);
    let gen_before = proc_sample(None).unwrap_or_default();

    // Staff first, so the reference sees every event from the start.
    let moderators = if config.moderators > 0 {
        config.moderators
    } else {
        // 20 messages a second per socket by default; leave room.
        ((config.ask_rate / 12.0).ceil() as usize).max(1)
    };
    let mut staff: Vec<JoinHandle<anyhow::Result<ModResult>>> = Vec::new();
    for i in 0..moderators {
        let ws = ws_connect(
            &config.urls[i % config.urls.len()],
            session,
            &moderator_token,
            None,
            WsOptions::default(),
        )
        .await
        .context("moderator connect")?;
        staff.push(tokio::spawn(moderator(
            ws,
            (
                config.urls[i % config.urls.len()].clone(),
                moderator_token.clone(),
            ),
            i,
            moderators,
            config.reject_ratio,
            shared.clone(),
        )));
    }
    let expert_ws = ws_connect(
        &config.urls[config.urls.len() - 1],
        session,
        &expert_token,
        None,
        WsOptions::default(),
    )
    .await
    .context("expert connect")?;

    // Connect phase.
    let bar = progress_bar(&config, config.patients as u64, "connecting");
    let mut senders = Vec::with_capacity(config.patients);
    let mut patients = Vec::with_capacity(config.patients);
    let phase_start = Instant::now();
    for idx in 0..config.patients {
        let due =
            phase_start + Duration::from_secs_f64(idx as f64 / config.connect_rate.max(0.001));
        tokio::time::sleep_until(due.into()).await;
        let (tx, rx) = mpsc::channel(16);
        senders.push(tx);
        let node = idx % config.urls.len();
        let options = WsOptions {
            source: (!config.sources.is_empty())
                .then(|| config.sources[idx % config.sources.len()]),
            recv_buffer: (idx < config.stalled).then_some(4096),
        };
        patients.push(tokio::spawn(patient(
            idx,
            shared.clone(),
            apis[node].clone(),
            options,
            idx < config.stalled,
            rx,
        )));
        if idx % 64 == 0 {
            bar.set_position(shared.connected.load(Ordering::Relaxed) as u64);
        }
    }
    let connect_deadline = Instant::now() + Duration::from_secs(60);
    while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
        < config.patients
        && Instant::now() < connect_deadline
    {
        bar.set_position(shared.connected.load(Ordering::Relaxed) as u64);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let connected = shared.connected.load(Ordering::Relaxed);
    let connect_span_ns = shared
        .connect_last
        .load(Ordering::Relaxed)
        .saturating_sub(shared.connect_first.load(Ordering::Relaxed));
    let connect_rate = if connect_span_ns > 0 {
        connected as f64 / (connect_span_ns as f64 / 1e9)
    } else {
        0.0
    };
    // Idle memory: let allocations settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server_idle = proc_samples(&pids);

    // Load phase.
    let expert = tokio::spawn(expert_bot(
        expert_ws,
        Duration::from_secs_f64(config.answer_every_s.max(0.05)),
        shared.clone(),
    ));
    let senders = Arc::new(senders);
    let schedulers = vec![
        tokio::spawn(scheduler(
            shared.clone(),
            senders.clone(),
            config.ask_rate,
            config.stalled,
            |_| Some(Cmd::Ask),
        )),
        tokio::spawn(scheduler(
            shared.clone(),
            senders.clone(),
            config.vote_rate,
            config.stalled,
            |shared| {
                let votable = shared.votable.lock().ok()?;
                if votable.is_empty() {
                    return None;
                }
                let recent = votable.len().min(20);
                let pick = votable[votable.len() - 1 - rand::rng().random_range(0..recent)];
                Some(Cmd::Vote(pick))
            },
        )),
    ];
    let load_bar = progress_bar(&config, (config.duration_s * 10.0) as u64, "load");
    let server_load_start = proc_samples(&pids);
    let gen_load_start = proc_sample(None).unwrap_or_default();
    let deliveries_start = shared.deliveries.load(Ordering::Relaxed);
    let load_start = Instant::now();
    let load_end = load_start + Duration::from_secs_f64(config.duration_s);
    let mut storm_fired = config.storm_at_s.is_none();
    let mut timeline = Vec::new();
    let mut last_tick = (
        Instant::now(),
        server_load_start,
        gen_load_start,
        deliveries_start,
    );
    while Instant::now() < load_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = load_start.elapsed().as_secs_f64();
        if !storm_fired && config.storm_at_s.is_some_and(|at| elapsed >= at) {
            storm_fired = true;
            let window = config.storm_window_s.max(0.0);
            shared.storm_first_drop.store(now_ns(), Ordering::Relaxed);
            for (idx, tx) in senders.iter().enumerate() {
                if idx < config.stalled {
                    continue;
                }
                let delay = Duration::from_secs_f64(rand::rng().random_range(0.0..=window));
                let _ = tx.try_send(Cmd::Reconnect { delay });
            }
        }
        load_bar.set_position((elapsed * 10.0) as u64);
        if last_tick.0.elapsed() >= Duration::from_secs(1) {
            let now = (
                Instant::now(),
                proc_samples(&pids),
                proc_sample(None).unwrap_or_default(),
                shared.deliveries.load(Ordering::Relaxed),
            );
            let dt = now.0.duration_since(last_tick.0).as_secs_f64();
            let point = TimelinePoint {
                t_s: elapsed,
                connected: shared.connected.load(Ordering::Relaxed),
                deliveries_per_s: (now.3 - last_tick.3) as f64 / dt,
                server_cores: (now.1.cpu_s - last_tick.1.cpu_s) / dt,
                server_rss_kib: now.1.rss_kib,
                generator_cores: (now.2.cpu_s - last_tick.2.cpu_s) / dt,
            };
            load_bar.set_message(format!(
                "{:>7.0} deliveries/s, server {:.2} cores, generator {:.2} cores",
                point.deliveries_per_s, point.server_cores, point.generator_cores
            ));
            timeline.push(point);
            last_tick = now;
        }
    }
    let load_elapsed = load_start.elapsed().as_secs_f64();
    let deliveries = shared.deliveries.load(Ordering::Relaxed) - deliveries_start;
    let server_load_end = proc_samples(&pids);
    let gen_load_end = proc_sample(None).unwrap_or_default();
    shared.load_over.cancel();
    load_bar.finish_and_clear();
    for s in schedulers {
        let _ = s.await;
    }
    let _ = expert.await;

    // Settle: the session is quiet (the reference's head unchanged for 1.5 s) and every
    // patient has the reference's last public event. Later events, if any, are left out of the
    // check on both sides.
    let settle_deadline = Instant::now() + Duration::from_secs_f64(config.settle_s);
    let mut quiet_since = (Instant::now(), shared.ref_last.load(Ordering::Relaxed));
    let final_public = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let head = shared.ref_last.load(Ordering::Relaxed);
        let last_public = shared.ref_last_public.load(Ordering::Relaxed);
        if head != quiet_since.1 {
            quiet_since = (Instant::now(), head);
        }
        let behind = (config.stalled..config.patients)
            .filter(|&i| shared.ready[i].load(Ordering::Relaxed))
            .any(|i| shared.last_public[i].load(Ordering::Relaxed) < last_public);
        if (!behind && quiet_since.0.elapsed() > Duration::from_millis(1500))
            || Instant::now() >= settle_deadline
        {
            break last_public;
        }
    };
    shared.end.cancel();
    let mut results = Vec::with_capacity(patients.len());
    for p in patients {
        results.push(p.await.unwrap_or_default());
    }
    let mut mods = Vec::new();
    for m in staff {
        mods.push(m.await.context("moderator task")??);
    }
    let server_end = proc_samples(&pids);
    let gen_end = proc_sample(None).unwrap_or_default();

    // Completeness against the reference.
    let reference = &mods[0];
    let mut completeness = Completeness {
        reference_gaps: reference.gaps,
        ..Completeness::default()
    };
    let mut errors_by_code = BTreeMap::new();
    let mut unexpected_closes = BTreeMap::new();
    let mut stalled = Vec::new();
    let mut votes_events = 0u64;
    let mut storm = StormReport {
        window_s: config.storm_window_s,
        ..StormReport::default()
    };
    for r in &results {
        for (code, n) in &r.errors {
            *errors_by_code.entry(code.clone()).or_insert(0) += n;
        }
        for (code, n) in &r.closes {
            *unexpected_closes.entry(code.clone()).or_insert(0) += n;
        }
        if r.stalled {
            stalled.push(r.stalled_outcome.clone());
            continue;
        }
        if !r.connected {
            continue;
        }
        if let Some(s) = r.storm {
            if s.ok {
                storm.reconnected += 1;
                if s.resumed {
                    storm.resumed += 1;
                } else {
                    storm.snapshots += 1;
                }
            } else {
                storm.failed += 1;
            }
        }
        votes_events += r.votes_events;
        completeness.checked_patients += 1;
        completeness.snapshot_fallbacks += r.snapshot_fallbacks;
        // Exactly the reference's public events after the patient's snapshot, up to the
        // final one, minus windows a reconnect snapshot replaced.
        let expected = reference
            .public_seqs
            .iter()
            .copied()
            .filter(|&seq| seq > r.start && seq <= final_public)
            .filter(|&seq| !r.excluded.iter().any(|&(a, b)| seq > a && seq <= b));
        let got = r
            .public
            .iter()
            .map(|&s| s as u64)
            .filter(|&s| s <= final_public);
        let (missing, unexpected) = compare(expected, got);
        completeness.out_of_order += r.out_of_order;
        completeness.missing += missing;
        completeness.unexpected += unexpected;
        let bad = r.out_of_order > 0 || missing > 0 || unexpected > 0;
        if bad {
            completeness.patients_with_violations += 1;
        }
    }
    completeness.ok = completeness.patients_with_violations == 0
        && completeness.reference_gaps == 0
        && completeness.checked_patients > 0;

    let mut approval_last = histogram();
    for slot in &shared.slots {
        let n = slot.deliveries.load(Ordering::Relaxed);
        if n > 0 {
            record_ns(&mut approval_last, slot.max_ns.load(Ordering::Relaxed));
        }
    }
    let mut approval_each = histogram();
    for shard in &shared.delivery_hist {
        if let Ok(h) = shard.lock() {
            let _ = approval_each.add(&*h);
        }
    }
    let summary = |m: &Mutex<Histogram<u64>>| m.lock().map(|h| Summary::of(&h)).unwrap_or_default();
    let storm = config.storm_at_s.map(|_| {
        let span = shared
            .storm_last_done
            .load(Ordering::Relaxed)
            .saturating_sub(shared.storm_first_drop.load(Ordering::Relaxed));
        storm.handshakes_per_s = if span > 0 {
            storm.reconnected as f64 / (span as f64 / 1e9)
        } else {
            0.0
        };
        storm.handshake_latency = summary(&shared.storm_hist);
        storm
    });
    let checked = completeness.checked_patients.max(1) as f64;
    let resources = |before: ProcSample,
                     idle: ProcSample,
                     start: ProcSample,
                     end: ProcSample,
                     last: ProcSample| {
        ResourceReport {
            cpu_s_load: end.cpu_s - start.cpu_s,
            cpu_cores_load: (end.cpu_s - start.cpu_s) / load_elapsed,
            rss_before_kib: before.rss_kib,
            rss_idle_kib: idle.rss_kib,
            rss_end_kib: last.rss_kib,
            kib_per_idle_patient: if connected > 0 {
                (idle.rss_kib as f64 - before.rss_kib as f64) / connected as f64
            } else {
                0.0
            },
            cpu_s_total: last.cpu_s - before.cpu_s,
        }
    };
    let report = QaReport {
        nodes: config.urls.len(),
        patients_connected: connected,
        connect_failures: shared.failed.load(Ordering::Relaxed),
        connect_errors: shared
            .connect_errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default(),
        connect_rate,
        connect_latency: summary(&shared.connect_hist),
        questions_asked: shared.asked.load(Ordering::Relaxed),
        approvals: mods.iter().map(|m| m.approvals).sum(),
        rejections: mods.iter().map(|m| m.rejections).sum(),
        votes_sent: shared.votes.load(Ordering::Relaxed),
        ask_to_moderator: summary(&shared.ask_hist),
        approval_to_last: Summary::of(&approval_last),
        approval_to_each: Summary::of(&approval_each),
        deliveries,
        deliveries_per_s: deliveries as f64 / load_elapsed,
        events: reference.events,
        public_events: reference.public_seqs.len() as u64,
        vote_updates_per_patient_s: votes_events as f64 / checked / load_elapsed,
        completeness,
        stalled,
        storm,
        errors_by_code,
        unexpected_closes,
        server: resources(
            server_before,
            server_idle,
            server_load_start,
            server_load_end,
            server_end,
        ),
        generator: resources(
            gen_before,
            gen_before,
            gen_load_start,
            gen_load_end,
            gen_end,
        ),
        timeline,
        config,
    };
    Ok(report)
}

fn progress_bar(config: &QaConfig, len: u64, prefix: &'static str) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(prefix);
    bar
}

/// Missing and unexpected items of two increasing sequences.
fn compare(expected: impl Iterator<Item = u64>, got: impl Iterator<Item = u64>) -> (u64, u64) {
    let (mut missing, mut unexpected) = (0, 0);
    let mut got = got.peekable();
    for e in expected {
        while got.next_if(|&g| g < e).is_some() {
            unexpected += 1;
        }
        if got.next_if_eq(&e).is_none() {
            missing += 1;
        }
    }
    unexpected += got.count() as u64;
    (missing, unexpected)
}

/// Sends commands at `rate` per second to random patients (not the stalled ones).
async fn scheduler(
    shared: Arc<Shared>,
    senders: Arc<Vec<mpsc::Sender<Cmd>>>,
    rate: f64,
    skip: usize,
    make: impl Fn(&Shared) -> Option<Cmd>,
) {
    if rate <= 0.0 || senders.len() <= skip {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = shared.load_over.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            sent += 1;
            let idx = rand::rng().random_range(skip..senders.len());
            if !shared.ready[idx].load(Ordering::Relaxed) {
                continue;
            }
            let Some(cmd) = make(&shared) else { continue };
            let _ = senders[idx].try_send(cmd);
        }
    }
}

/// One patient: join, connect, then read events and carry out the schedulers' commands.
async fn patient(
    idx: usize,
    shared: Arc<Shared>,
    api: ApiClient,
    options: WsOptions,
    stalled: bool,
    mut cmds: mpsc::Receiver<Cmd>,
) -> PatientResult {
    let mut r = PatientResult {
        stalled,
        ..PatientResult::default()
    };
    let started = now_ns();
    shared.connect_first.fetch_min(started, Ordering::Relaxed);
    let connect = async {
        let joined = api.join(shared.session, Some(&format!("p{idx}"))).await?;
        let ws = ws_connect(&api.url, shared.session, &joined.token, None, options).await?;
        anyhow::Ok((joined.token, ws))
    };
    let (token, mut ws) = match connect.await {
        Ok(ok) => ok,
        Err(e) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut errors) = shared.connect_errors.lock()
                && errors.len() < 10
            {
                errors.push(format!("{e:#}"));
            }
            return r;
        }
    };
    // The first message: the snapshot.
    match first_message(&mut ws).await {
        Ok(First::Snapshot(seq)) => {
            r.start = seq;
            r.last_any = seq;
        }
        other => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut errors) = shared.connect_errors.lock() {
                errors.push(format!("first message: {other:?}"));
            }
            return r;
        }
    }
    let done = now_ns();
    shared.connect_last.fetch_max(done, Ordering::Relaxed);
    if let Ok(mut h) = shared.connect_hist.lock() {
        record_ns(&mut h, done - started);
    }
    r.connected = true;
    shared.last_public[idx].store(r.start, Ordering::Relaxed);
    shared.connected.fetch_add(1, Ordering::Relaxed);
    shared.ready[idx].store(true, Ordering::Relaxed);

    if stalled {
        // Never read again until the end; then find out whether the server dropped us.
        shared.end.cancelled().await;
        r.stalled_outcome = drain_until_close(&mut ws).await;
        return r;
    }

    // Agree to the privacy notice once, as the page does before the first question; the
    // server keeps it for the patient's id, so reconnects need not repeat it.
    let consent = ClientMsg {
        req: Some("consent".into()),
        request: Request::Consent,
    };
    if let Ok(text) = serde_json::to_string(&consent)
        && ws.send(Message::Text(text.into())).await.is_err()
    {
        *r.errors.entry("consent send".into()).or_insert(0) += 1;
    }
    let mut req = 0u64;
    let mut asked = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = shared.end.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                break;
            }
            msg = ws.next() => {
                let stop = match msg {
                    Some(Ok(Message::Text(text))) => {
                        handle(idx, &shared, &mut r, text.as_str());
                        None
                    }
                    Some(Ok(Message::Close(frame))) => {
                        Some(frame.map_or_else(|| "none".to_owned(), |f| u16::from(f.code).to_string()))
                    }
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(format!("error: {e}")),
                    None => Some("eof".to_owned()),
                };
                if let Some(code) = stop {
                    if shared.end.is_cancelled() {
                        break;
                    }
                    *r.closes.entry(code).or_insert(0) += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match reconnect(idx, &shared, &api, &token, options, &mut r).await {
                        Some(new) => ws = new,
                        None => break,
                    }
                }
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { continue };
                req += 1;
                let msg = match cmd {
                    Cmd::Ask => {
                        asked += 1;
                        shared.asked.fetch_add(1, Ordering::Relaxed);
                        ClientMsg::command(req.to_string(), Command::Ask {
                            text: format!("load question p{idx} n{asked} t{}", now_ns()),
                        })
                    }
                    Cmd::Vote(question) => {
                        shared.votes.fetch_add(1, Ordering::Relaxed);
                        ClientMsg::command(req.to_string(), Command::Vote { question })
                    }
                    Cmd::Reconnect { delay } => {
                        // Drop the socket without a close handshake, like a phone losing its
                        // network, and come back with `since` after the delay.
                        drop(ws);
                        tokio::time::sleep(delay).await;
                        let started = now_ns();
                        let fallbacks = r.snapshot_fallbacks;
                        let again = reconnect(idx, &shared, &api, &token, options, &mut r).await;
                        let ok = again.is_some();
                        let resumed = r.snapshot_fallbacks == fallbacks;
                        r.storm = Some(StormOutcome { ok, resumed });
                        if ok {
                            let done = now_ns();
                            shared.storm_last_done.fetch_max(done, Ordering::Relaxed);
                            if let Ok(mut h) = shared.storm_hist.lock() {
                                record_ns(&mut h, done - started);
                            }
                        }
                        match again {
                            Some(new) => { ws = new; continue; }
                            None => break,
                        }
                    }
                };
                let text = serde_json::to_string(&msg).unwrap_or_default();
                if ws.send(Message::Text(text.into())).await.is_err() {
                    // The read side notices and reconnects.
                    continue;
                }
            }
        }
    }
    r
}

#[derive(Debug)]
enum First {
    Snapshot(u64),
    Resumed {
        since: u64,
    },
    /// Anything else (shown in error reports through `Debug`).
    #[allow(dead_code)]
    Other(String),
}

async fn first_message(ws: &mut Ws) -> anyhow::Result<First> {
    let deadline = Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .context("no first message")?
            .context("closed before the first message")??;
        if let Message::Text(text) = msg {
            let m: Incoming = serde_json::from_str(text.as_str())?;
            return Ok(match (&*m.kind, m.seq, m.since) {
                ("snapshot", Some(seq), _) => First::Snapshot(seq),
                ("resumed", Some(_), Some(since)) => First::Resumed { since },
                _ => First::Other(text.as_str().chars().take(200).collect()),
            });
        }
    }
}

/// Reconnects with `since`; a snapshot instead of a resume excludes the skipped window.
async fn reconnect(
    idx: usize,
    shared: &Shared,
    api: &ApiClient,
    token: &str,
    options: WsOptions,
    r: &mut PatientResult,
) -> Option<Ws> {
    let mut backoff = Duration::from_millis(250);
    for _ in 0..8 {
        let attempt = async {
            let mut ws =
                ws_connect(&api.url, shared.session, token, Some(r.last_any), options).await?;
            let first = first_message(&mut ws).await?;
            anyhow::Ok((ws, first))
        };
        match attempt.await {
            Ok((ws, First::Resumed { since })) if since == r.last_any => return Some(ws),
            Ok((ws, First::Snapshot(seq))) => {
                r.snapshot_fallbacks += 1;
                r.excluded.push((r.last_any, seq));
                r.last_any = r.last_any.max(seq);
                shared.last_public[idx].fetch_max(seq, Ordering::Relaxed);
                return Some(ws);
            }
            Ok((_, other)) => {
                *r.errors
                    .entry(format!("bad resume: {other:?}"))
                    .or_insert(0) += 1;
            }
            Err(e) => {
                *r.errors
                    .entry(format!("reconnect: {}", short(&format!("{e:#}"))))
                    .or_insert(0) += 1;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(4));
    }
    None
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

fn handle(idx: usize, shared: &Shared, r: &mut PatientResult, text: &str) {
    let Ok(m) = serde_json::from_str::<Incoming>(text) else {
        *r.errors.entry("undecodable".into()).or_insert(0) += 1;
        return;
    };
    let public = match &*m.kind {
        "session" | "question_removed" => true,
        "votes" => {
            r.votes_events += 1;
            true
        }
        "question" => m.question.as_ref().is_some_and(|q| is_public(q.status)),
        "ack" | "pong" | "viewers" => return,
        "error" => {
            let code = m
                .code
                .map(|c| format!("{c:?}"))
                .unwrap_or_else(|| "unknown".into());
            *r.errors.entry(code).or_insert(0) += 1;
            return;
        }
        other => {
            *r.errors.entry(format!("unexpected {other}")).or_insert(0) += 1;
            return;
        }
    };
    let Some(seq) = m.seq else { return };
    shared.deliveries.fetch_add(1, Ordering::Relaxed);
    if seq <= r.last_any {
        r.out_of_order += 1;
        return;
    }
    r.last_any = seq;
    if !public {
        return;
    }
    let own = m.question.as_ref().is_some_and(|q| q.author_id.is_some());
    let seq = public_seq(seq, own);
    r.public.push(seq as u32);
    shared.last_public[idx].store(seq, Ordering::Relaxed);
    if let Some(q) = &m.question
        && q.status == QuestionStatus::Approved
        && let Some(approved_at) = stamp(&q.text, 'a')
    {
        let latency = now_ns().saturating_sub(approved_at);
        if let Some(slot) = shared.slots.get(q.id as usize) {
            slot.deliveries.fetch_add(1, Ordering::Relaxed);
            slot.max_ns.fetch_max(latency, Ordering::Relaxed);
        }
        if let Ok(mut h) = shared.delivery_hist[idx % HIST_SHARDS].lock() {
            record_ns(&mut h, latency);
        }
    }
}

/// A stalled patient at the end: read what is buffered until the close frame or the end of the
/// stream, to see whether (and how) the server dropped it.
async fn drain_until_close(ws: &mut Ws) -> StalledOutcome {
    let mut outcome = StalledOutcome::default();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(_)) => outcome.events_before_stall += 1,
                Ok(Message::Close(frame)) => {
                    outcome.dropped = true;
                    outcome.close_code = frame.map(|f| u16::from(f.code));
                    return;
                }
                Ok(_) => {}
                Err(_) => {
                    outcome.dropped = true;
                    return;
                }
            }
        }
        outcome.dropped = true;
    })
    .await;
    outcome
}

/// What a moderator knows at the end; moderator 0's is the reference.
#[derive(Debug, Default)]
struct ModResult {
    public_seqs: Vec<u64>,
    events: u64,
    gaps: u64,
    approvals: u64,
    rejections: u64,
    reconnects: u64,
}

/// Approves or rejects the pending questions whose id falls to it (`id % of == index`); keeps
/// the reference log when it is moderator 0.
async fn moderator(
    mut ws: Ws,
    (base, token): (String, String),
    index: usize,
    of: usize,
    reject_ratio: f64,
    shared: Arc<Shared>,
) -> anyhow::Result<ModResult> {
    let mut r = ModResult::default();
    let reference = index == 0;
    let mut last: Option<u64> = None;
    let mut votable: HashSet<u64> = HashSet::new();
    let mut req = 0u64;
    loop {
        let msg = tokio::select! {
            _ = shared.end.cancelled() => break,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(
                Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
            )) => {
                continue;
            }
            closed => {
                // Too slow (4000) or gone: resume with `since`, as the protocol says.
                r.reconnects += 1;
                if r.reconnects > 5 {
                    bail!("moderator {index}: closed too often, last: {closed:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                ws = ws_connect(&base, shared.session, &token, last, WsOptions::default())
                    .await
                    .with_context(|| format!("moderator {index} reconnect"))?;
                continue;
            }
        };
        let msg: ServerMsg = serde_json::from_str(text.as_str())
            .with_context(|| format!("moderator decode: {}", short(text.as_str())))?;
        if let ServerMsg::Snapshot(Snapshot { seq, .. }) = &msg {
            if reference && last.is_some() {
                // A snapshot instead of a resume: the reference lost its continuity.
                r.gaps += 1;
            }
            last = Some(*seq);
            if reference {
                shared.ref_last.store(*seq, Ordering::Relaxed);
                shared.ref_last_public.store(*seq, Ordering::Relaxed);
            }
            continue;
        }
        let Some(seq) = msg.event_seq() else { continue };
        let public = match &msg {
            ServerMsg::Question { question, .. } => is_public(question.status),
            _ => true,
        };
        // Staff get the staff view of a public question, logged right after its public view.
        let staff_twin = public && matches!(msg, ServerMsg::Question { .. });
        if reference {
            r.events += 1;
            if let Some(l) = last
                && seq != l + 1
                && !(staff_twin && seq == l + 2)
            {
                r.gaps += 1;
            }
        }
        last = Some(seq);
        if reference {
            if public {
                let seq = public_seq(seq, staff_twin);
                r.public_seqs.push(seq);
                shared.ref_last_public.store(seq, Ordering::Relaxed);
            }
            shared.ref_last.store(seq, Ordering::Relaxed);
            if let ServerMsg::Question { question, .. } = &msg {
                let changed = match question.status {
                    QuestionStatus::Approved | QuestionStatus::Answering => {
                        votable.insert(question.id)
                    }
                    _ => votable.remove(&question.id),
                };
                if changed && let Ok(mut list) = shared.votable.lock() {
                    list.retain(|id| votable.contains(id));
                    if question.status.takes_votes() && !list.contains(&question.id) {
                        list.push(question.id);
                    }
                }
            }
        }
        let ServerMsg::Question { question, .. } = msg else {
            continue;
        };
        if question.status != QuestionStatus::Pending || question.id % of as u64 != index as u64 {
            continue;
        }
        if let Some(asked_at) = stamp(&question.text, 't')
            && let Ok(mut h) = shared.ask_hist.lock()
        {
            record_ns(&mut h, now_ns().saturating_sub(asked_at));
        }
        req += 1;
        let reject = (mix(question.id) % 1000) as f64 / 1000.0 < reject_ratio;
        let out = if reject {
            r.rejections += 1;
            ClientMsg::command(
                req.to_string(),
                Command::Reject {
                    question: question.id,
                    reason: Some("Off topic (load test)".into()),
                    code: None,
                },
            )
        } else {
            r.approvals += 1;
            ClientMsg::command(
                req.to_string(),
                Command::Approve {
                    question: question.id,
                    text: Some(format!("{} a{}", question.text, now_ns())),
                    original: false,
                },
            )
        };
        ws.send(Message::Text(serde_json::to_string(&out)?.into()))
            .await?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(r)
}

/// Marks the oldest votable question `answering`, then `answered`, every `every`.
async fn expert_bot(mut ws: Ws, every: Duration, shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    let mut req = 0u64;
    let mut answering: Option<u64> = None;
    loop {
        tokio::select! {
            _ = shared.load_over.cancelled() => break,
            msg = ws.next() => match msg {
                Some(Ok(_)) => {}
                _ => bail!("expert socket closed"),
            },
            _ = tick.tick() => {
                req += 1;
                let msg = match answering.take() {
                    Some(question) => ClientMsg::command(req.to_string(), Command::Answered {
                        question,
                        answer: Some("Answered live (load test).".into()),
                    }),
                    None => {
                        let next = shared.votable.lock().ok().and_then(|v| v.first().copied());
                        let Some(question) = next else { continue };
                        answering = Some(question);
                        ClientMsg::command(req.to_string(), Command::Answering { question })
                    }
                };
                ws.send(Message::Text(serde_json::to_string(&msg)?.into())).await?;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(())
}
