//! The video scenario: one synthetic publisher (WHIP) sending VP8-like RTP at a given bitrate
//! plus Opus-sized audio, and N viewers (WHEP), all the workspace's one WHIP/WHEP peer
//! (`oncolive_testkit::media`) in this process.
//!
//! Every payload carries its kind (keyframe, video, audio), a per-kind packet counter and the
//! send time on the shared clock ([`now_ns`]), so a viewer counts losses from the
//! counters, computes RFC 3550 interarrival jitter from send and receive times, and knows when
//! its first keyframe (its first decodable frame) arrived. The relay never parses payloads.
//! Run inside a loopback-only network namespace (see `docs/video.md`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oncolive_server::model::SessionId;
use oncolive_testkit::media::{
    IceTimeouts, Kind, MediaClient, PAYLOAD_HEADER, Publisher, Received, Viewer, payload,
};
use serde::{Deserialize, Serialize};

use oncolive_testkit::ApiClient;

use crate::common::{
    Summary, go_live, histogram, new_session, now_ns, proc_sample, proc_samples, record_ns,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoConfig {
    pub url: String,
    pub admin_token: Option<String>,
    /// An existing session and its expert token instead of creating one.
    pub session: Option<SessionId>,
    pub expert_token: Option<String>,
    pub viewers: usize,
    /// Video bitrate in kbit/s (audio adds ≈ 50 packets/s of 120 bytes).
    pub bitrate_kbps: u32,
    pub fps: u32,
    /// Seconds of the measured steady phase, after every viewer connected.
    pub duration_s: f64,
    /// New viewers per second.
    pub connect_rate: f64,
    /// A keyframe at least this often, and on every PLI/FIR.
    pub keyframe_every_s: f64,
    pub server_pids: Vec<u32>,
    pub progress: bool,
    /// Nodes the viewers connect to, round-robin (the publisher uses `url`); empty: `url`
    /// alone. With several nodes on one Redis, viewers of the others go through origin–edge.
    #[serde(default)]
    pub viewer_urls: Vec<String>,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            url: String::new(),
            admin_token: None,
            session: None,
            expert_token: None,
            viewers: 10,
            bitrate_kbps: 1000,
            fps: 30,
            duration_s: 10.0,
            connect_rate: 20.0,
            keyframe_every_s: 2.0,
            server_pids: vec![],
            progress: true,
            viewer_urls: vec![],
        }
    }
}

/// What the viewers of one node saw (origin–edge: each hop's added delay is the difference of
/// the nodes' delays).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeReport {
    pub url: String,
    pub viewers: usize,
    pub video_loss_pct: f64,
    pub delay: Summary,
}

/// One server process's share of the steady phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PidReport {
    pub pid: u32,
    pub cpu_cores: f64,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VideoReport {
    pub config: VideoConfig,
    pub viewers_connected: usize,
    pub viewer_failures: usize,
    pub viewer_errors: Vec<String>,
    pub publisher_video_packets: u64,
    pub publisher_audio_packets: u64,
    pub keyframes_sent: u64,
    pub plis_received: u64,
    /// Over the steady phase, all viewers.
    pub video_packets_expected: u64,
    pub video_packets_received: u64,
    pub audio_packets_expected: u64,
    pub audio_packets_received: u64,
    pub video_loss_pct: f64,
    pub audio_loss_pct: f64,
    /// The worst viewer's video loss.
    pub worst_viewer_loss_pct: f64,
    /// RFC 3550 interarrival jitter of video, mean and max over viewers.
    pub jitter_ms_mean: f64,
    pub jitter_ms_max: f64,
    /// Publisher write → viewer read, every video packet of the steady phase.
    pub delay: Summary,
    /// WHEP `POST` sent → first video packet / first keyframe packet (first decodable frame).
    pub first_packet: Summary,
    pub first_frame: Summary,
    /// RTP payload bits delivered to all viewers per second in the steady phase (headers,
    /// SRTP and UDP overhead not counted).
    pub forwarded_mbit_s: f64,
    pub server_cpu_cores: f64,
    /// Server CPU seconds per second, per forwarded Gbit/s of payload.
    pub server_cores_per_gbit_s: f64,
    pub server_rss_idle_kib: u64,
    pub server_rss_kib: u64,
    pub server_kib_per_viewer: f64,
    pub generator_cpu_cores: f64,
    /// Per viewer node (one entry without `viewer_urls`).
    #[serde(default)]
    pub nodes: Vec<NodeReport>,
    /// Per `--server-pid`, in the order given.
    #[serde(default)]
    pub pids: Vec<PidReport>,
}

const MAX_PAYLOAD: usize = 1100;

#[derive(Default)]
struct Sent {
    video: AtomicU64,
    audio: AtomicU64,
    keyframes: AtomicU64,
}

/// Sends video frames at `fps` (split into ≤ 1100-byte packets) and an audio packet every 20 ms
/// until `stop` fires.
async fn publish(
    publisher: Arc<Publisher>,
    config: VideoConfig,
    sent: Arc<Sent>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let frame_bytes =
        (config.bitrate_kbps as usize * 1000 / 8 / config.fps.max(1) as usize).max(PAYLOAD_HEADER);
    let mut frame_tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / config.fps.max(1) as f64));
    frame_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let (mut vcount, mut acount) = (0u32, 0u32);
    let mut frame = 0u32;
    let mut last_key = Instant::now();
    let keyframe_every = Duration::from_secs_f64(config.keyframe_every_s.max(0.1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = frame_tick.tick() => {
                frame += 1;
                let key = publisher.take_keyframe_request() || last_key.elapsed() >= keyframe_every;
                if key {
                    last_key = Instant::now();
                    sent.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                // Keyframes are three times the size of delta frames, as with a real encoder.
                let bytes = if key { frame_bytes * 3 } else { frame_bytes };
                let kind = if key { Kind::Keyframe } else { Kind::Video };
                let timestamp = frame.wrapping_mul(90_000 / config.fps.max(1));
                let packets = bytes.div_ceil(MAX_PAYLOAD);
                for i in 0..packets {
                    vcount += 1;
                    let last = i + 1 == packets;
                    let size = if last { bytes - MAX_PAYLOAD * (packets - 1) } else { MAX_PAYLOAD };
                    publisher
                        .write_video(payload(kind, vcount, now_ns(), size), timestamp, last)
                        .await?;
                    sent.video.store(vcount as u64, Ordering::Relaxed);
                }
            }
            _ = audio_tick.tick() => {
                acount += 1;
                publisher
                    .write_audio(payload(Kind::Audio, acount, now_ns(), 120), acount.wrapping_mul(960))
                    .await?;
                sent.audio.store(acount as u64, Ordering::Relaxed);
            }
        }
    }
}

/// What one viewer saw, per kind.
#[derive(Debug, Default, Clone)]
struct Stream {
    first: Option<u32>,
    last: u32,
    received: u64,
    /// Counter and count when the steady phase began.
    steady_from: Option<(u32, u64)>,
    prev_transit: Option<i64>,
    jitter_ns: f64,
    /// Payload bytes received in the steady phase.
    steady_bytes: u64,
}

#[derive(Default)]
struct ViewerState {
    first_packet_at: Option<Instant>,
    first_key_at: Option<Instant>,
    video: Stream,
    audio: Stream,
}

struct MeasuredViewer {
    peer: Viewer,
    state: Arc<Mutex<ViewerState>>,
    node: usize,
}

struct Shared {
    delay: Mutex<Histogram<u64>>,
    /// The same, per viewer node.
    node_delays: Vec<Mutex<Histogram<u64>>>,
    steady: AtomicBool,
    connected: AtomicUsize,
}

async fn connect_viewer(
    http: &ApiClient,
    media: &MediaClient,
    session: SessionId,
    shared: Arc<Shared>,
    node: usize,
) -> anyhow::Result<MeasuredViewer> {
    let token = http.join(session, Some("viewer")).await?.token;
    let state = Arc::new(Mutex::new(ViewerState::default()));
    let peer = media
        .viewer(session, &token)
        .on_packet({
            let state = state.clone();
            move |packet| record(&state, &shared, node, packet)
        })
        .connect()
        .await
        .context("WHEP")?;
    peer.wait_connected().await?;
    Ok(MeasuredViewer { peer, state, node })
}

/// One packet arrived at a viewer (on its track's reader task).
fn record(state: &Mutex<ViewerState>, shared: &Shared, node: usize, packet: Received) {
    let received = now_ns();
    let at = Instant::now();
    let steady = shared.steady.load(Ordering::Relaxed);
    let Ok(mut s) = state.lock() else { return };
    if packet.kind.is_video() {
        s.first_packet_at.get_or_insert(at);
        if packet.kind == Kind::Keyframe {
            s.first_key_at.get_or_insert(at);
        }
    }
    let stream = if packet.kind.is_video() {
        &mut s.video
    } else {
        &mut s.audio
    };
    stream.first.get_or_insert(packet.marker);
    stream.last = stream.last.max(packet.marker);
    stream.received += 1;
    if steady {
        stream.steady_bytes += packet.size as u64;
        if stream.steady_from.is_none() {
            stream.steady_from = Some((packet.marker, stream.received - 1));
        }
    }
    let transit = received as i64 - packet.sent_ns as i64;
    if let Some(prev) = stream.prev_transit {
        let d = (transit - prev).abs() as f64;
        stream.jitter_ns += (d - stream.jitter_ns) / 16.0;
    }
    stream.prev_transit = Some(transit);
    if steady && packet.kind.is_video() {
        if let Ok(mut h) = shared.delay.lock() {
            record_ns(&mut h, transit.max(0) as u64);
        }
        if let Some(Ok(mut h)) = shared.node_delays.get(node).map(Mutex::lock) {
            record_ns(&mut h, transit.max(0) as u64);
        }
    }
}

pub async fn run(config: VideoConfig) -> anyhow::Result<VideoReport> {
    now_ns();
    let admin = config.admin_token.clone().unwrap_or_default();
    let http = ApiClient::new(config.url.as_str(), admin);
    let (session, expert) = match (&config.session, &config.admin_token) {
        (Some(id), _) => (
            *id,
            config
                .expert_token
                .clone()
                .context("--session needs --expert-token")?,
        ),
        (None, Some(_)) => {
            let created = new_session(&http, "Video load test").await?;
            (created.session.id, created.tokens.expert)
        }
        (None, None) => bail!("give --admin-token, or --session with --expert-token"),
    };
    go_live(&http, session, &expert).await?;
    let pids = config.server_pids.clone();
    let server_before = proc_samples(&pids);
    let each_pid = |pids: &[u32]| -> Vec<crate::common::ProcSample> {
        pids.iter()
            .map(|p| crate::common::proc_sample(Some(*p)).unwrap_or_default())
            .collect()
    };

    // The crate's ICE timeouts: a busy generator must not lose viewers to a hiccup.
    let media = MediaClient::new(&http.url, http.http.clone(), IceTimeouts::Default)?
        .patience(Duration::from_secs(30));
    let publisher = Arc::new(
        media
            .publisher(session, &expert)
            .connect()
            .await
            .context("WHIP")?,
    );
    publisher.wait_connected().await.context("publisher")?;
    let sent = Arc::new(Sent::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let publishing = tokio::spawn(publish(
        publisher.clone(),
        config.clone(),
        sent.clone(),
        stop.clone(),
    ));

    let viewer_urls = if config.viewer_urls.is_empty() {
        vec![config.url.clone()]
    } else {
        config.viewer_urls.clone()
    };
    let mut targets = Vec::new();
    for url in &viewer_urls {
        let api = ApiClient::new(url.as_str(), config.admin_token.clone().unwrap_or_default());
        let media = MediaClient::new(&api.url, api.http.clone(), IceTimeouts::Default)?
            .patience(Duration::from_secs(30));
        targets.push((api, media));
    }
    let shared = Arc::new(Shared {
        delay: Mutex::new(histogram()),
        node_delays: viewer_urls
            .iter()
            .map(|_| Mutex::new(histogram()))
            .collect(),
        steady: AtomicBool::new(false),
        connected: AtomicUsize::new(0),
    });
    let bar = if config.progress {
        let bar = ProgressBar::with_draw_target(
            Some(config.viewers as u64),
            ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix("viewers");
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut joins = Vec::new();
    let start = Instant::now();
    for i in 0..config.viewers {
        let due = start + Duration::from_secs_f64(i as f64 / config.connect_rate.max(0.01));
        tokio::time::sleep_until(due.into()).await;
        let node = i % targets.len();
        let (http, media) = targets[node].clone();
        let shared = shared.clone();
        let bar = bar.clone();
        joins.push(tokio::spawn(async move {
            let viewer = connect_viewer(&http, &media, session, shared.clone(), node).await;
            if viewer.is_ok() {
                shared.connected.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            }
            viewer
        }));
    }
    let mut viewers = Vec::new();
    let mut errors = Vec::new();
    for j in joins {
        match j.await? {
            Ok(v) => viewers.push(v),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    // Let every viewer get its first keyframe and settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server_idle = proc_samples(&pids);
    bar.set_message("steady phase");

    // Steady phase.
    let server_start = proc_samples(&pids);
    let pids_start = each_pid(&pids);
    let gen_start = proc_sample(None).unwrap_or_default();
    let steady_start = Instant::now();
    shared.steady.store(true, Ordering::Relaxed);
    let sent_video_start = sent.video.load(Ordering::Relaxed);
    let sent_audio_start = sent.audio.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(config.duration_s)).await;
    stop.cancel();
    publishing.await??;
    let sent_video_end = sent.video.load(Ordering::Relaxed);
    let sent_audio_end = sent.audio.load(Ordering::Relaxed);
    // What is in flight arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady_s = steady_start.elapsed().as_secs_f64();
    let server_end = proc_samples(&pids);
    let pids_end = each_pid(&pids);
    let gen_end = proc_sample(None).unwrap_or_default();
    bar.finish_and_clear();

    let mut report = VideoReport {
        viewers_connected: viewers.len(),
        viewer_failures: errors.len(),
        viewer_errors: errors.into_iter().take(10).collect(),
        publisher_video_packets: sent_video_end,
        publisher_audio_packets: sent_audio_end,
        keyframes_sent: sent.keyframes.load(Ordering::Relaxed),
        plis_received: publisher.keyframe_requests() as u64,
        ..VideoReport::default()
    };
    let (mut first_packet, mut first_frame) = (histogram(), histogram());
    let mut jitters = Vec::new();
    let mut bytes = 0u64;
    // Per node: viewers, expected, received.
    let mut per_node = vec![(0usize, 0u64, 0u64); viewer_urls.len()];
    for v in &viewers {
        let Ok(s) = v.state.lock() else { continue };
        let since_post = |t: Instant| t.duration_since(v.peer.posted_at()).as_nanos() as u64;
        if let Some(t) = s.first_packet_at {
            record_ns(&mut first_packet, since_post(t));
        }
        if let Some(t) = s.first_key_at {
            record_ns(&mut first_frame, since_post(t));
        }
        let count = |st: &Stream, sent_start: u64, sent_end: u64| -> (u64, u64) {
            // Expected: every packet sent in the steady phase (counters sent_start+1 ..=
            // sent_end); received: those that arrived (at most one each: RTP has no duplicates
            // here, the relay forwards each packet once).
            let expected = sent_end.saturating_sub(sent_start);
            let received = st.steady_from.map_or(0, |(_, before)| st.received - before);
            (expected, received.min(expected))
        };
        let (ve, vr) = count(&s.video, sent_video_start, sent_video_end);
        let (ae, ar) = count(&s.audio, sent_audio_start, sent_audio_end);
        report.video_packets_expected += ve;
        report.video_packets_received += vr;
        report.audio_packets_expected += ae;
        report.audio_packets_received += ar;
        let loss = if ve > 0 {
            100.0 * (ve - vr) as f64 / ve as f64
        } else {
            100.0
        };
        report.worst_viewer_loss_pct = report.worst_viewer_loss_pct.max(loss);
        if let Some(n) = per_node.get_mut(v.node) {
            n.0 += 1;
            n.1 += ve;
            n.2 += vr;
        }
        jitters.push(s.video.jitter_ns / 1e6);
        bytes += s.video.steady_bytes + s.audio.steady_bytes;
    }
    let pct = |e: u64, r: u64| {
        if e > 0 {
            100.0 * (e - r) as f64 / e as f64
        } else {
            0.0
        }
    };
    report.video_loss_pct = pct(report.video_packets_expected, report.video_packets_received);
    report.audio_loss_pct = pct(report.audio_packets_expected, report.audio_packets_received);
    report.jitter_ms_mean = if jitters.is_empty() {
        0.0
    } else {
        jitters.iter().sum::<f64>() / jitters.len() as f64
    };
    report.jitter_ms_max = jitters.iter().cloned().fold(0.0, f64::max);
    report.delay = shared
        .delay
        .lock()
        .map(|h| Summary::of(&h))
        .unwrap_or_default();
    report.first_packet = Summary::of(&first_packet);
    report.first_frame = Summary::of(&first_frame);
    report.forwarded_mbit_s = bytes as f64 * 8.0 / steady_s / 1e6;
    report.server_cpu_cores = (server_end.cpu_s - server_start.cpu_s) / steady_s;
    report.server_cores_per_gbit_s = if report.forwarded_mbit_s > 0.0 {
        report.server_cpu_cores / (report.forwarded_mbit_s / 1000.0)
    } else {
        0.0
    };
    report.server_rss_idle_kib = server_before.rss_kib;
    report.server_rss_kib = server_idle.rss_kib;
    report.server_kib_per_viewer = if !viewers.is_empty() {
        (server_idle.rss_kib as f64 - server_before.rss_kib as f64) / viewers.len() as f64
    } else {
        0.0
    };
    report.generator_cpu_cores = (gen_end.cpu_s - gen_start.cpu_s) / steady_s;
    report.nodes = viewer_urls
        .iter()
        .zip(&per_node)
        .zip(&shared.node_delays)
        .map(
            |((url, &(viewers, expected, received)), delay)| NodeReport {
                url: url.clone(),
                viewers,
                video_loss_pct: pct(expected, received),
                delay: delay.lock().map(|h| Summary::of(&h)).unwrap_or_default(),
            },
        )
        .collect();
    report.pids = pids
        .iter()
        .zip(pids_start.iter().zip(&pids_end))
        .map(|(&pid, (a, b))| PidReport {
            pid,
            cpu_cores: (b.cpu_s - a.cpu_s) / steady_s,
            rss_kib: b.rss_kib,
        })
        .collect();

    // Leave cleanly: DELETE every resource, then close the peers.
    for v in &viewers {
        let _ = v.peer.delete().await;
        v.peer.close().await;
    }
    let _ = publisher.delete().await;
    publisher.close().await;
    report.config = config;
    Ok(report)
}
