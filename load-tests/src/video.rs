//! The video scenario: one synthetic publisher (WHIP) sending VP8-like RTP at a given bitrate
//! plus Opus-sized audio, and N viewers (WHEP), all `webrtc` 0.14 peers in this process.
//!
//! Every payload carries its kind (`K` keyframe, `V` video, `A` audio), a per-kind packet
//! counter and the send time on the shared clock ([`now_ns`]), so a viewer counts losses from the
//! counters, computes RFC 3550 interarrival jitter from send and receive times, and knows when
//! its first keyframe (its first decodable frame) arrived. The relay never parses payloads.
//! Run inside a loopback-only network namespace (see `docs/video.md`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use oncolive_server::model::SessionId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

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
        }
    }
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
}

const PAYLOAD_HEADER: usize = 2 + 4 + 8;
const MAX_PAYLOAD: usize = 1100;

fn client_api() -> anyhow::Result<API> {
    let mut media = MediaEngine::default();
    media.register_default_codecs()?;
    api_with(media)
}

fn api_with(mut media: MediaEngine) -> anyhow::Result<API> {
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_include_loopback_candidate(true);
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

fn state_watch(pc: &RTCPeerConnection) -> watch::Receiver<RTCPeerConnectionState> {
    let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
    pc.on_peer_connection_state_change(Box::new(move |state| {
        tx.send_replace(state);
        Box::pin(async {})
    }));
    rx
}

async fn wait_connected(rx: &mut watch::Receiver<RTCPeerConnectionState>) -> anyhow::Result<()> {
    let state = tokio::time::timeout(
        Duration::from_secs(30),
        rx.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .context("timed out connecting")??;
    if *state != RTCPeerConnectionState::Connected {
        bail!("peer connection {}", *state);
    }
    Ok(())
}

/// Non-trickle offer → `POST` → answer. Returns the resource URL.
async fn negotiate(
    api: &ApiClient,
    pc: &RTCPeerConnection,
    url: &str,
    token: &str,
) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), gathered.recv()).await;
    let offer = pc
        .local_description()
        .await
        .context("no local description")?;
    let response = api
        .http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer.sdp)
        .send()
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("{url}: {status}: {body}");
    }
    pc.set_remote_description(RTCSessionDescription::answer(body)?)
        .await?;
    Ok(format!("{}{}", api.url, location.unwrap_or_default()))
}

/// The synthetic expert.
struct Publisher {
    pc: Arc<RTCPeerConnection>,
    video: Arc<TrackLocalStaticRTP>,
    audio: Arc<TrackLocalStaticRTP>,
    keyframe_wanted: Arc<AtomicBool>,
    plis: Arc<AtomicU64>,
    resource: String,
}

impl Publisher {
    async fn connect(
        api: &ApiClient,
        session: SessionId,
        token: &str,
    ) -> anyhow::Result<Publisher> {
        let mut media = MediaEngine::default();
        let opus = RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.into(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
            rtcp_feedback: vec![],
        };
        let vp8 = RTCRtpCodecCapability {
            mime_type: MIME_TYPE_VP8.into(),
            clock_rate: 90_000,
            ..Default::default()
        };
        media.register_codec(
            RTCRtpCodecParameters {
                capability: opus.clone(),
                payload_type: 111,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )?;
        media.register_codec(
            RTCRtpCodecParameters {
                capability: vp8.clone(),
                payload_type: 96,
                ..Default::default()
            },
            RTPCodecType::Video,
        )?;
        let pc = Arc::new(
            api_with(media)?
                .new_peer_connection(RTCConfiguration::default())
                .await?,
        );
        let mut state = state_watch(&pc);
        let video = Arc::new(TrackLocalStaticRTP::new(vp8, "video".into(), "load".into()));
        let audio = Arc::new(TrackLocalStaticRTP::new(
            opus,
            "audio".into(),
            "load".into(),
        ));
        let sendonly = || {
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: vec![],
            })
        };
        let video_tx = pc
            .add_transceiver_from_track(video.clone(), sendonly())
            .await?;
        let audio_tx = pc
            .add_transceiver_from_track(audio.clone(), sendonly())
            .await?;
        let keyframe_wanted = Arc::new(AtomicBool::new(true));
        let plis = Arc::new(AtomicU64::new(0));
        {
            let sender = video_tx.sender().await;
            let wanted = keyframe_wanted.clone();
            let plis = plis.clone();
            tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    let n = packets
                        .iter()
                        .filter(|p| {
                            p.as_any().is::<PictureLossIndication>()
                                || p.as_any().is::<FullIntraRequest>()
                        })
                        .count();
                    if n > 0 {
                        plis.fetch_add(n as u64, Ordering::Relaxed);
                        wanted.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        {
            // Read the audio sender's RTCP too, so the interceptors see the receiver reports.
            let sender = audio_tx.sender().await;
            tokio::spawn(async move { while sender.read_rtcp().await.is_ok() {} });
        }
        let url = format!("{}/api/sessions/{session}/whip", api.url);
        let resource = negotiate(api, &pc, &url, token).await.context("WHIP")?;
        wait_connected(&mut state).await.context("publisher")?;
        Ok(Publisher {
            pc,
            video,
            audio,
            keyframe_wanted,
            plis,
            resource,
        })
    }
}

#[derive(Default)]
struct Sent {
    video: AtomicU64,
    audio: AtomicU64,
    keyframes: AtomicU64,
}

fn payload(kind: u8, counter: u32, size: usize) -> Bytes {
    let mut p = BytesMut::with_capacity(size.max(PAYLOAD_HEADER));
    // A VP8 payload descriptor byte (S=1) then our tag; the relay never looks inside.
    p.put_u8(0x10);
    p.put_u8(kind);
    p.put_u32(counter);
    p.put_u64(now_ns());
    p.resize(size.max(PAYLOAD_HEADER), 0xAB);
    p.freeze()
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
    let (mut vseq, mut aseq) = (1000u16, 5000u16);
    let (mut vcount, mut acount) = (0u32, 0u32);
    let mut frame = 0u32;
    let mut last_key = Instant::now();
    let keyframe_every = Duration::from_secs_f64(config.keyframe_every_s.max(0.1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = frame_tick.tick() => {
                frame += 1;
                let key = publisher.keyframe_wanted.swap(false, Ordering::Relaxed) || last_key.elapsed() >= keyframe_every;
                if key {
                    last_key = Instant::now();
                    sent.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                // Keyframes are three times the size of delta frames, as with a real encoder.
                let bytes = if key { frame_bytes * 3 } else { frame_bytes };
                let packets = bytes.div_ceil(MAX_PAYLOAD);
                for i in 0..packets {
                    vseq = vseq.wrapping_add(1);
                    vcount += 1;
                    let size = if i + 1 == packets { bytes - MAX_PAYLOAD * (packets - 1) } else { MAX_PAYLOAD };
                    let packet = Packet {
                        header: Header {
                            version: 2,
                            marker: i + 1 == packets,
                            payload_type: 96,
                            sequence_number: vseq,
                            timestamp: frame.wrapping_mul(90_000 / config.fps.max(1)),
                            ..Header::default()
                        },
                        payload: payload(if key { b'K' } else { b'V' }, vcount, size),
                    };
                    publisher.video.write_rtp(&packet).await?;
                    sent.video.store(vcount as u64, Ordering::Relaxed);
                }
            }
            _ = audio_tick.tick() => {
                aseq = aseq.wrapping_add(1);
                acount += 1;
                let packet = Packet {
                    header: Header {
                        version: 2,
                        payload_type: 111,
                        sequence_number: aseq,
                        timestamp: acount.wrapping_mul(960),
                        ..Header::default()
                    },
                    payload: payload(b'A', acount, 120),
                };
                publisher.audio.write_rtp(&packet).await?;
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
    posted_ns: u64,
    first_packet_ns: Option<u64>,
    first_key_ns: Option<u64>,
    video: Stream,
    audio: Stream,
}

struct Viewer {
    pc: Arc<RTCPeerConnection>,
    resource: String,
    state: Arc<Mutex<ViewerState>>,
}

struct Shared {
    delay: Mutex<Histogram<u64>>,
    steady: AtomicBool,
    connected: AtomicUsize,
}

async fn connect_viewer(
    http: &ApiClient,
    rtc: &API,
    session: SessionId,
    shared: Arc<Shared>,
) -> anyhow::Result<Viewer> {
    let token = http.join(session, Some("viewer")).await?.token;
    let pc = Arc::new(rtc.new_peer_connection(RTCConfiguration::default()).await?);
    let mut pc_state = state_watch(&pc);
    for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                send_encodings: vec![],
            }),
        )
        .await?;
    }
    let state = Arc::new(Mutex::new(ViewerState::default()));
    {
        let state = state.clone();
        pc.on_track(Box::new(move |track, _, _| {
            let state = state.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Ok((packet, _)) = track.read_rtp().await {
                    let received = now_ns();
                    let p = &packet.payload;
                    if p.len() < PAYLOAD_HEADER {
                        continue;
                    }
                    let kind = p[1];
                    let counter = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
                    let sent =
                        u64::from_be_bytes([p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]]);
                    let steady = shared.steady.load(Ordering::Relaxed);
                    let Ok(mut s) = state.lock() else { return };
                    if kind != b'A' {
                        s.first_packet_ns.get_or_insert(received);
                        if kind == b'K' {
                            s.first_key_ns.get_or_insert(received);
                        }
                    }
                    let stream = if kind == b'A' {
                        &mut s.audio
                    } else {
                        &mut s.video
                    };
                    stream.first.get_or_insert(counter);
                    stream.last = stream.last.max(counter);
                    stream.received += 1;
                    if steady {
                        stream.steady_bytes += p.len() as u64;
                        if stream.steady_from.is_none() {
                            stream.steady_from = Some((counter, stream.received - 1));
                        }
                    }
                    let transit = received as i64 - sent as i64;
                    if let Some(prev) = stream.prev_transit {
                        let d = (transit - prev).abs() as f64;
                        stream.jitter_ns += (d - stream.jitter_ns) / 16.0;
                    }
                    stream.prev_transit = Some(transit);
                    if steady
                        && kind != b'A'
                        && let Ok(mut h) = shared.delay.lock()
                    {
                        record_ns(&mut h, transit.max(0) as u64);
                    }
                }
            });
            Box::pin(async {})
        }));
    }
    state
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .posted_ns = now_ns();
    let url = format!("{}/api/sessions/{session}/whep", http.url);
    let resource = negotiate(http, &pc, &url, &token).await.context("WHEP")?;
    wait_connected(&mut pc_state).await?;
    Ok(Viewer {
        pc,
        resource,
        state,
    })
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

    let publisher = Arc::new(Publisher::connect(&http, session, &expert).await?);
    let sent = Arc::new(Sent::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let publishing = tokio::spawn(publish(
        publisher.clone(),
        config.clone(),
        sent.clone(),
        stop.clone(),
    ));

    let shared = Arc::new(Shared {
        delay: Mutex::new(histogram()),
        steady: AtomicBool::new(false),
        connected: AtomicUsize::new(0),
    });
    let rtc = Arc::new(client_api()?);
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
        let (http, rtc, shared) = (http.clone(), rtc.clone(), shared.clone());
        let bar = bar.clone();
        joins.push(tokio::spawn(async move {
            let viewer = connect_viewer(&http, &rtc, session, shared.clone()).await;
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
    let gen_end = proc_sample(None).unwrap_or_default();
    bar.finish_and_clear();

    let mut report = VideoReport {
        viewers_connected: viewers.len(),
        viewer_failures: errors.len(),
        viewer_errors: errors.into_iter().take(10).collect(),
        publisher_video_packets: sent_video_end,
        publisher_audio_packets: sent_audio_end,
        keyframes_sent: sent.keyframes.load(Ordering::Relaxed),
        plis_received: publisher.plis.load(Ordering::Relaxed),
        ..VideoReport::default()
    };
    let (mut first_packet, mut first_frame) = (histogram(), histogram());
    let mut jitters = Vec::new();
    let mut bytes = 0u64;
    for v in &viewers {
        let Ok(s) = v.state.lock() else { continue };
        if let Some(t) = s.first_packet_ns {
            record_ns(&mut first_packet, t.saturating_sub(s.posted_ns));
        }
        if let Some(t) = s.first_key_ns {
            record_ns(&mut first_frame, t.saturating_sub(s.posted_ns));
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

    // Leave cleanly: DELETE every resource, then close the peers.
    for v in &viewers {
        let _ = http
            .http
            .delete(&v.resource)
            .bearer_auth(&expert)
            .send()
            .await;
        let _ = v.pc.close().await;
    }
    let _ = http
        .http
        .delete(&publisher.resource)
        .bearer_auth(&expert)
        .send()
        .await;
    let _ = publisher.pc.close().await;
    report.config = config;
    Ok(report)
}
