//! Test harness: the relay's router served on 127.0.0.1:0 with a test
//! authorizer, and `webrtc` peers acting as publisher and viewers.
//!
//! Run inside a loopback-only network namespace:
//! `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling'`.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use async_trait::async_trait;
use oncolive_signaling::{Access, AuthError, Authorizer, Relay, RelayConfig};
use tokio::sync::{mpsc, watch};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
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

/// Upper bound of every wait in the tests (never a speed assertion).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Tokens are `expert:SESSION`, `viewer:SESSION`; anything else is unknown.
/// Sessions named `missing` do not exist; ended sessions answer 410.
#[derive(Default)]
pub struct TestAuth {
    pub ended: Mutex<HashSet<String>>,
}

#[async_trait]
impl Authorizer for TestAuth {
    async fn authorize(&self, session: &str, token: &str) -> Result<Access, AuthError> {
        if session == "missing" {
            return Err(AuthError::NotFound(format!("no session {session}")));
        }
        let (role, token_session) = token
            .split_once(':')
            .ok_or_else(|| AuthError::Unauthorized("unknown token".into()))?;
        let access = match role {
            "expert" => Access::Publish,
            "viewer" => Access::View,
            _ => return Err(AuthError::Unauthorized("unknown token".into())),
        };
        if token_session != session {
            return Err(AuthError::Forbidden("token of another session".into()));
        }
        if self.ended.lock().expect("lock").contains(session) {
            return Err(AuthError::Gone("session ended".into()));
        }
        Ok(access)
    }
}

pub struct TestRelay {
    pub relay: Relay,
    pub auth: Arc<TestAuth>,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn spawn_relay(config: RelayConfig) -> Result<TestRelay> {
    init_logs();
    let auth = Arc::new(TestAuth::default());
    let relay = Relay::new(config, auth.clone())?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = relay.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(TestRelay {
        relay,
        auth,
        base,
        http: reqwest::Client::new(),
    })
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn expert(session: &str) -> String {
    format!("expert:{session}")
}

pub fn viewer_token(session: &str) -> String {
    format!("viewer:{session}")
}

fn client_api(media: MediaEngine) -> Result<API> {
    let mut media = media;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_include_loopback_candidate(true);
    // Short, so a peer the relay closed is noticed quickly in the tests.
    settings.set_ice_timeouts(
        Some(Duration::from_secs(1)),
        Some(Duration::from_secs(2)),
        Some(Duration::from_millis(300)),
    );
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

/// A non-trickle offer from `pc`, POSTed to `url`; sets the answer. Returns the response headers.
async fn negotiate(
    t: &TestRelay,
    pc: &RTCPeerConnection,
    url: &str,
    token: &str,
) -> Result<reqwest::header::HeaderMap> {
    negotiate_with(t, pc, url, token, &|answer| Ok(answer)).await
}

/// Like [`negotiate`], with a chance to change the answer before it is applied.
async fn negotiate_with(
    t: &TestRelay,
    pc: &RTCPeerConnection,
    url: &str,
    token: &str,
    rewrite: &(dyn Fn(String) -> Result<String> + Sync),
) -> Result<reqwest::header::HeaderMap> {
    let offer = pc.create_offer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await?;
    tokio::time::timeout(PATIENCE, gathered.recv()).await?;
    let offer = pc
        .local_description()
        .await
        .context("no local description")?;
    let response = t
        .http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer.sdp)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await?;
    if status != reqwest::StatusCode::CREATED {
        bail!("{url}: {status}: {body}");
    }
    pc.set_remote_description(RTCSessionDescription::answer(rewrite(body)?)?)
        .await?;
    Ok(headers)
}

fn state_watch(pc: &RTCPeerConnection) -> watch::Receiver<RTCPeerConnectionState> {
    let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
    pc.on_peer_connection_state_change(Box::new(move |state| {
        tx.send_replace(state);
        Box::pin(async {})
    }));
    rx
}

pub async fn wait_state(
    rx: &mut watch::Receiver<RTCPeerConnectionState>,
    wanted: &[RTCPeerConnectionState],
) -> Result<RTCPeerConnectionState> {
    let state = tokio::time::timeout(PATIENCE, rx.wait_for(|s| wanted.contains(s)))
        .await
        .context("timed out waiting for a connection state")??;
    Ok(*state)
}

pub enum VideoCodec {
    Vp8,
    H264,
}

pub struct TestPublisher {
    pub pc: Arc<RTCPeerConnection>,
    pub video: Arc<TrackLocalStaticRTP>,
    pub audio: Arc<TrackLocalStaticRTP>,
    pub plis: Arc<AtomicUsize>,
    pub location: String,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    seq: u16,
}

impl TestPublisher {
    pub async fn connect(t: &TestRelay, session: &str, codec: VideoCodec) -> Result<Self> {
        let mut media = MediaEngine::default();
        media.register_codec(
            RTCRtpCodecParameters {
                capability: RTCRtpCodecCapability {
                    mime_type: MIME_TYPE_OPUS.into(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                    rtcp_feedback: vec![],
                },
                payload_type: 111,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )?;
        let video_capability = match codec {
            VideoCodec::Vp8 => RTCRtpCodecCapability {
                mime_type: MIME_TYPE_VP8.into(),
                clock_rate: 90_000,
                ..Default::default()
            },
            VideoCodec::H264 => RTCRtpCodecCapability {
                mime_type: MIME_TYPE_H264.into(),
                clock_rate: 90_000,
                sdp_fmtp_line:
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
                ..Default::default()
            },
        };
        media.register_codec(
            RTCRtpCodecParameters {
                capability: video_capability.clone(),
                payload_type: 102,
                ..Default::default()
            },
            RTPCodecType::Video,
        )?;
        let api = client_api(media)?;
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
        let state = state_watch(&pc);
        let video = Arc::new(TrackLocalStaticRTP::new(
            video_capability,
            "video".into(),
            "pub".into(),
        ));
        let audio = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            "audio".into(),
            "pub".into(),
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
        pc.add_transceiver_from_track(audio.clone(), sendonly())
            .await?;
        let plis = Arc::new(AtomicUsize::new(0));
        {
            let sender = video_tx.sender().await;
            let plis = plis.clone();
            tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    let n = packets
                        .iter()
                        .filter(|p| p.as_any().is::<PictureLossIndication>())
                        .count();
                    plis.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
        let url = format!("{}/api/sessions/{session}/whip", t.base);
        let headers = negotiate(t, &pc, &url, &expert(session)).await?;
        let location = headers
            .get("location")
            .context("no Location")?
            .to_str()?
            .to_owned();
        Ok(Self {
            pc,
            video,
            audio,
            plis,
            location,
            state,
            seq: rand_seq(),
        })
    }

    pub async fn wait_connected(&mut self) -> Result<()> {
        wait_state(&mut self.state, &[RTCPeerConnectionState::Connected]).await?;
        Ok(())
    }

    /// Writes one video and one audio packet whose payloads carry `marker`.
    pub async fn send(&mut self, marker: u32) -> Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let video = Packet {
            header: Header {
                version: 2,
                marker: true,
                sequence_number: self.seq,
                timestamp: marker.wrapping_mul(3000),
                ..Header::default()
            },
            payload: payload(b'V', marker),
        };
        let audio = Packet {
            header: Header {
                version: 2,
                sequence_number: self.seq,
                timestamp: marker.wrapping_mul(960),
                ..Header::default()
            },
            payload: payload(b'A', marker),
        };
        self.video.write_rtp(&video).await?;
        self.audio.write_rtp(&audio).await?;
        Ok(())
    }

    pub fn plis(&self) -> usize {
        self.plis.load(Ordering::SeqCst)
    }
}

fn rand_seq() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7)
        % 60_000) as u16
}

/// A VP8-like payload: descriptor byte, kind tag, marker. The relay never parses it.
pub fn payload(kind: u8, marker: u32) -> bytes::Bytes {
    let mut p = vec![0x10, kind];
    p.extend_from_slice(&marker.to_be_bytes());
    p.extend_from_slice(&[0xAB; 64]);
    p.into()
}

/// What a viewer received: kind tag, marker, RTP sequence number, codec MIME type.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: u8,
    pub marker: u32,
    pub seq: u16,
    pub mime: String,
}

pub struct TestViewer {
    pub pc: Arc<RTCPeerConnection>,
    pub rx: mpsc::UnboundedReceiver<Received>,
    pub location: String,
    pub publisher_header: String,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub token: String,
}

impl TestViewer {
    pub async fn connect(t: &TestRelay, session: &str) -> Result<Self> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        Self::connect_with(t, session, media).await
    }

    /// A viewer whose browser knows only Opus and VP8.
    pub async fn connect_vp8_only(t: &TestRelay, session: &str) -> Result<Self> {
        let mut media = MediaEngine::default();
        for (mime, clock_rate, channels, pt, kind) in [
            (MIME_TYPE_OPUS, 48_000, 2, 111, RTPCodecType::Audio),
            (MIME_TYPE_VP8, 90_000, 0, 96, RTPCodecType::Video),
        ] {
            media.register_codec(
                RTCRtpCodecParameters {
                    capability: RTCRtpCodecCapability {
                        mime_type: mime.into(),
                        clock_rate,
                        channels,
                        ..Default::default()
                    },
                    payload_type: pt,
                    ..Default::default()
                },
                kind,
            )?;
        }
        Self::connect_with(t, session, media).await
    }

    pub async fn connect_with(t: &TestRelay, session: &str, media: MediaEngine) -> Result<Self> {
        Self::connect_rewriting(t, session, media, &|answer| Ok(answer)).await
    }

    /// A viewer whose media passes through `proxy`, which drops some of what the relay sends.
    pub async fn connect_through(t: &TestRelay, session: &str, proxy: &LossyProxy) -> Result<Self> {
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        Self::connect_rewriting(t, session, media, &|answer| proxy.divert(&answer)).await
    }

    async fn connect_rewriting(
        t: &TestRelay,
        session: &str,
        media: MediaEngine,
        rewrite: &(dyn Fn(String) -> Result<String> + Sync),
    ) -> Result<Self> {
        let api = client_api(media)?;
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
        let state = state_watch(&pc);
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
        let (tx, rx) = mpsc::unbounded_channel();
        pc.on_track(Box::new(move |track, _, _| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mime = track.codec().capability.mime_type;
                while let Ok((packet, _)) = track.read_rtp().await {
                    let p = &packet.payload;
                    if p.len() < 6 {
                        continue;
                    }
                    let marker = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
                    let received = Received {
                        kind: p[1],
                        marker,
                        seq: packet.header.sequence_number,
                        mime: mime.clone(),
                    };
                    if tx.send(received).is_err() {
                        break;
                    }
                }
            });
            Box::pin(async {})
        }));
        let token = viewer_token(session);
        let url = format!("{}/api/sessions/{session}/whep", t.base);
        let headers = negotiate_with(t, &pc, &url, &token, rewrite).await?;
        let header = |name: &str| -> Result<String> {
            Ok(headers
                .get(name)
                .context("missing header")?
                .to_str()?
                .to_owned())
        };
        Ok(Self {
            pc,
            rx,
            location: header("location")?,
            publisher_header: header("x-oncolive-publisher")?,
            state,
            token,
        })
    }

    pub async fn wait_connected(&mut self) -> Result<()> {
        wait_state(&mut self.state, &[RTCPeerConnectionState::Connected]).await?;
        Ok(())
    }

    /// Next video packet, or `None` after `wait`.
    pub async fn next_video(&mut self, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let r = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()??;
            if r.kind == b'V' {
                return Some(r);
            }
        }
    }

    /// Drops what was received so far.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut all = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            all.push(r);
        }
        all
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// Sends marker packets every 20 ms until every viewer has seen one
/// (media flows end to end), then returns the next free marker.
pub async fn warm_up(
    publisher: &mut TestPublisher,
    viewers: &mut [&mut TestViewer],
    mut marker: u32,
) -> Result<u32> {
    let mut seen = vec![false; viewers.len()];
    for _ in 0..(PATIENCE.as_millis() / 20) {
        publisher.send(marker).await?;
        marker += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (i, v) in viewers.iter_mut().enumerate() {
            if v.drain().iter().any(|r| r.kind == b'V') {
                seen[i] = true;
            }
        }
        if seen.iter().all(|s| *s) {
            return Ok(marker);
        }
    }
    bail!("media did not reach every viewer: {seen:?}")
}

/// Sends markers `from..to`, 5 ms apart (paced like a real stream).
pub async fn send_batch(publisher: &mut TestPublisher, from: u32, to: u32) -> Result<()> {
    for marker in from..to {
        publisher.send(marker).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Collects what a viewer receives until both its video and its audio
/// reached marker `last` (they arrive on separate tracks, in either order),
/// or time runs out.
pub async fn collect_until(viewer: &mut TestViewer, last: u32) -> Vec<Received> {
    let mut got = Vec::new();
    let (mut video_done, mut audio_done) = (false, false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, viewer.rx.recv()).await {
        if r.marker >= last {
            video_done |= r.kind == b'V';
            audio_done |= r.kind == b'A';
        }
        got.push(r);
        if video_done && audio_done {
            break;
        }
    }
    got
}

/// A UDP hop between one viewer and the relay that drops `drop_of_ten` of every ten RTP packets
/// the relay sends (STUN, DTLS and RTCP pass), like a lossy mobile link. The viewer is pointed
/// at it by rewriting the relay's candidates in the answer; the relay sees the proxy as a
/// peer-reflexive address, as it would a NAT.
pub struct LossyProxy {
    port: u16,
    target: Arc<Mutex<Option<SocketAddr>>>,
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    pub async fn start(drop_of_ten: u64) -> Result<LossyProxy> {
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let port = front.local_addr()?.port();
        let target = Arc::new(Mutex::new(None::<SocketAddr>));
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn({
            let target = target.clone();
            let dropped = dropped.clone();
            async move {
                let (mut a, mut b) = ([0u8; 2048], [0u8; 2048]);
                let mut viewer = None;
                let mut rtp = 0u64;
                loop {
                    tokio::select! {
                        Ok((n, from)) = front.recv_from(&mut a) => {
                            viewer = Some(from);
                            let to = *target.lock().unwrap_or_else(|p| p.into_inner());
                            if let Some(to) = to {
                                let _ = back.send_to(&a[..n], to).await;
                            }
                        }
                        Ok((n, _)) = back.recv_from(&mut b) => {
                            // RTP: version 2, and a payload type outside RTCP's 64..=95.
                            let is_rtp = n > 12 && b[0] >> 6 == 2 && !(64..=95).contains(&(b[1] & 0x7f));
                            if is_rtp {
                                rtp += 1;
                                if rtp % 10 < drop_of_ten {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                            }
                            if let Some(v) = viewer {
                                let _ = front.send_to(&b[..n], v).await;
                            }
                        }
                    }
                }
            }
        });
        Ok(LossyProxy {
            port,
            target,
            dropped,
            task,
        })
    }

    /// Keeps one IPv4 UDP candidate of the answer, remembers it as the proxy's target and
    /// replaces it with the proxy's own address.
    fn divert(&self, answer: &str) -> Result<String> {
        let mut out = String::new();
        let mut diverted = false;
        for line in answer.split_inclusive('\n') {
            if let Some(rest) = line.trim_end().strip_prefix("a=candidate:") {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ipv4_udp = fields.len() > 5
                    && fields[2].eq_ignore_ascii_case("udp")
                    && fields[4].parse::<std::net::Ipv4Addr>().is_ok();
                if diverted || !ipv4_udp {
                    continue;
                }
                let to: SocketAddr = format!("{}:{}", fields[4], fields[5]).parse()?;
                *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(to);
                let mut fields = fields;
                let port = self.port.to_string();
                fields[4] = "127.0.0.1";
                fields[5] = &port;
                out.push_str(&format!("a=candidate:{}\r\n", fields.join(" ")));
                diverted = true;
                continue;
            }
            out.push_str(line);
        }
        ensure!(diverted, "the answer has no IPv4 UDP candidate");
        Ok(out)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
