//! One WHIP publisher and one WHEP viewer on the `webrtc` crate (0.14, the relay's), used by the
//! relay's tests and the video load generator.
//!
//! Both negotiate without trickle (the offer waits for its own ICE gathering, the answer
//! carries the relay's candidates), so nothing is sent after the `POST`. Every payload says
//! what it is ([`Kind`]), carries a marker (a test's sequence marker, the load generator's
//! per-kind counter) and a send time in nanoseconds on the caller's clock, so a viewer can
//! check order, count losses and measure delay; the relay never parses payloads.
//!
//! Peers gather on loopback only when nothing else exists, so run them in a loopback-only
//! network namespace: `unshare -n sh -c 'ip link set lo up; cargo test …'`.

use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::{BufMut, Bytes, BytesMut};
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
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
/// The states [`Peer::wait_state`] takes, for suites that do not depend on `webrtc` themselves.
pub use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
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
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::{TrackLocal, TrackLocalWriter};

/// Upper bound of every wait (never a speed assertion).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Bytes of [`payload`] before its padding.
pub const PAYLOAD_HEADER: usize = 2 + 4 + 8;

/// What a payload says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The first packets of a video frame a decoder can start from.
    Keyframe,
    /// Any other video packet.
    Video,
    Audio,
}

impl Kind {
    /// The byte after the VP8 payload descriptor, where a VP8 frame header begins: its low bit
    /// (P, "inter frame") is clear only for keyframes, so the relay, which looks there to
    /// switch simulcast layers, sees the same keyframes a decoder would.
    fn tag(self) -> u8 {
        match self {
            Kind::Keyframe => b'J',
            Kind::Video => b'W',
            Kind::Audio => b'A',
        }
    }

    fn from_tag(tag: u8) -> Option<Kind> {
        match tag {
            b'J' => Some(Kind::Keyframe),
            b'W' => Some(Kind::Video),
            b'A' => Some(Kind::Audio),
            _ => None,
        }
    }

    pub fn is_video(self) -> bool {
        self != Kind::Audio
    }
}

/// A payload of `size` bytes (at least [`PAYLOAD_HEADER`]): a VP8 payload descriptor byte
/// (S=1), the kind's tag, `marker` and `sent_ns` (big-endian), then padding.
pub fn payload(kind: Kind, marker: u32, sent_ns: u64, size: usize) -> Bytes {
    let size = size.max(PAYLOAD_HEADER);
    let mut p = BytesMut::with_capacity(size);
    p.put_u8(0x10);
    p.put_u8(kind.tag());
    p.put_u32(marker);
    p.put_u64(sent_ns);
    p.resize(size, 0xAB);
    p.freeze()
}

/// One packet a viewer received.
#[derive(Debug, Clone)]
pub struct Received {
    pub kind: Kind,
    pub marker: u32,
    pub sent_ns: u64,
    /// The RTP sequence number, as the relay rewrote it.
    pub seq: u16,
    /// Payload bytes.
    pub size: usize,
    /// The track's codec, e.g. `video/VP8`.
    pub mime: Arc<str>,
}

impl Received {
    fn parse(packet: &Packet, mime: &Arc<str>) -> Option<Received> {
        let p = &packet.payload;
        if p.len() < PAYLOAD_HEADER {
            return None;
        }
        Some(Received {
            kind: Kind::from_tag(p[1])?,
            marker: u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            sent_ns: u64::from_be_bytes([p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]]),
            seq: packet.header.sequence_number,
            size: p.len(),
            mime: mime.clone(),
        })
    }
}

/// The video codec a publisher offers, or the only one a viewer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    /// Constrained baseline, packetization mode 1 (what OBS and Chromium's OpenH264 send).
    H264,
}

impl VideoCodec {
    fn parameters(self) -> RTCRtpCodecParameters {
        let (mime_type, fmtp, payload_type) = match self {
            VideoCodec::Vp8 => (MIME_TYPE_VP8, "", 96),
            VideoCodec::H264 => (
                MIME_TYPE_H264,
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
                102,
            ),
        };
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: mime_type.to_owned(),
                clock_rate: 90_000,
                sdp_fmtp_line: fmtp.to_owned(),
                ..Default::default()
            },
            payload_type,
            ..Default::default()
        }
    }
}

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        capability: RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
        ..Default::default()
    }
}

/// A media engine that knows Opus and, if given, exactly one video codec.
fn media_engine(video: Option<VideoCodec>, simulcast: bool) -> Result<MediaEngine> {
    let mut media = MediaEngine::default();
    media.register_codec(opus(), RTPCodecType::Audio)?;
    if let Some(codec) = video {
        media.register_codec(codec.parameters(), RTPCodecType::Video)?;
    }
    if simulcast {
        // Each layer's packets carry its MID and rid, as a browser's do.
        for uri in [
            webrtc::sdp::extmap::SDES_MID_URI,
            webrtc::sdp::extmap::SDES_RTP_STREAM_ID_URI,
        ] {
            media.register_header_extension(
                webrtc::rtp_transceiver::rtp_codec::RTCRtpHeaderExtensionCapability {
                    uri: uri.to_owned(),
                },
                RTPCodecType::Video,
                None,
            )?;
        }
    }
    Ok(media)
}

/// How soon a peer gives up on a silent relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceTimeouts {
    /// The crate's (disconnected after 5 s, failed after 25 s): a load run on a busy machine
    /// does not lose peers to a scheduling hiccup.
    Default,
    /// Disconnected after 1 s, failed after 2 s: a test notices a peer the relay closed quickly.
    Short,
}

/// Builds publishers and viewers for one relay (or server) at `base`.
#[derive(Clone)]
pub struct MediaClient {
    base: String,
    http: reqwest::Client,
    settings: SettingEngine,
    patience: Duration,
    /// Viewers with every codec share one API: a load run builds hundreds of them.
    viewer_api: Arc<API>,
}

impl MediaClient {
    /// `base` is `http://host:port`; the endpoints are `{base}/api/sessions/{id}/whip|whep`.
    pub fn new(base: &str, http: reqwest::Client, ice: IceTimeouts) -> Result<MediaClient> {
        // DTLS needs a process-wide rustls provider; a test without a relay in its process (one
        // that talks to `oncolive` nodes) has none yet. The relay installs the same one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut settings = SettingEngine::default();
        // mDNS needs a multicast-capable interface; the relay and these peers share one host.
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        settings.set_network_types(vec![NetworkType::Udp4]);
        settings.set_include_loopback_candidate(true);
        if ice == IceTimeouts::Short {
            settings.set_ice_timeouts(
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_millis(300)),
            );
        }
        let mut every_codec = MediaEngine::default();
        every_codec.register_default_codecs()?;
        let viewer_api = Arc::new(build_api(every_codec, settings.clone())?);
        Ok(MediaClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
            settings,
            patience: PATIENCE,
            viewer_api,
        })
    }

    /// The longest wait for ICE gathering and for a connection (default [`PATIENCE`]).
    pub fn patience(mut self, patience: Duration) -> MediaClient {
        self.patience = patience;
        self
    }

    /// A WHIP publisher for `session`, offering VP8 and Opus unless told otherwise.
    pub fn publisher(&self, session: impl Display, token: &str) -> PublisherBuilder<'_> {
        PublisherBuilder {
            client: self,
            url: format!("{}/api/sessions/{session}/whip", self.base),
            token: token.to_owned(),
            video: Some(VideoCodec::Vp8),
            simulcast: Vec::new(),
        }
    }

    /// A WHEP viewer for `session` that accepts every codec the crate knows.
    pub fn viewer(&self, session: impl Display, token: &str) -> ViewerBuilder<'_> {
        ViewerBuilder {
            client: self,
            url: format!("{}/api/sessions/{session}/whep", self.base),
            token: token.to_owned(),
            only: None,
            audio_only: false,
            through: None,
            on_packet: None,
        }
    }

    fn api(&self, media: MediaEngine) -> Result<API> {
        build_api(media, self.settings.clone())
    }

    async fn peer_connection(&self, api: &API) -> Result<Arc<RTCPeerConnection>> {
        Ok(Arc::new(
            api.new_peer_connection(RTCConfiguration::default()).await?,
        ))
    }

    /// Sends a non-trickle offer from `pc` to `url` and applies the answer (after `rewrite`).
    async fn negotiate(
        &self,
        pc: Arc<RTCPeerConnection>,
        url: &str,
        token: &str,
        rewrite: &(dyn Fn(String) -> Result<String> + Sync),
    ) -> Result<Peer> {
        let state = state_watch(&pc);
        let offer = pc.create_offer(None).await?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer).await?;
        tokio::time::timeout(self.patience, gathered.recv())
            .await
            .context("ICE gathering did not finish")?;
        let offer = pc
            .local_description()
            .await
            .context("no local description")?;
        let posted_at = Instant::now();
        let response = self
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
        let location = headers
            .get("location")
            .context("no Location in the 201")?
            .to_str()?
            .to_owned();
        Ok(Peer {
            pc,
            location,
            headers,
            token: token.to_owned(),
            base: self.base.clone(),
            http: self.http.clone(),
            state,
            patience: self.patience,
            posted_at,
        })
    }
}

fn build_api(mut media: MediaEngine, settings: SettingEngine) -> Result<API> {
    // NACKs, reports and TWCC as a browser would send them.
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
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

fn one_way(direction: RTCRtpTransceiverDirection) -> Option<RTCRtpTransceiverInit> {
    Some(RTCRtpTransceiverInit {
        direction,
        send_encodings: vec![],
    })
}

/// What publishers and viewers have in common: a negotiated peer connection and its resource.
pub struct Peer {
    pub pc: Arc<RTCPeerConnection>,
    /// The resource's `Location`, as the relay sent it (a path).
    pub location: String,
    headers: reqwest::header::HeaderMap,
    token: String,
    base: String,
    http: reqwest::Client,
    state: watch::Receiver<RTCPeerConnectionState>,
    patience: Duration,
    posted_at: Instant,
}

impl Peer {
    /// The resource's absolute URL (for `PATCH` and `DELETE`).
    pub fn resource_url(&self) -> String {
        format!("{}{}", self.base, self.location)
    }

    /// The bearer token the peer was created with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// When the offer was sent (a `POST` → first packet time starts here).
    pub fn posted_at(&self) -> Instant {
        self.posted_at
    }

    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Waits until ICE and DTLS are up; fails at once if the connection fails or closes.
    pub async fn wait_connected(&self) -> Result<()> {
        use RTCPeerConnectionState::{Closed, Connected, Failed};
        let state = self.wait_state(&[Connected, Failed, Closed]).await?;
        ensure!(state == Connected, "peer connection {state}");
        Ok(())
    }

    /// Waits until the connection is in one of `wanted` states and returns it.
    pub async fn wait_state(
        &self,
        wanted: &[RTCPeerConnectionState],
    ) -> Result<RTCPeerConnectionState> {
        let mut state = self.state.clone();
        let reached = tokio::time::timeout(self.patience, state.wait_for(|s| wanted.contains(s)))
            .await
            .with_context(|| format!("timed out waiting for {wanted:?}"))??;
        Ok(*reached)
    }

    /// `DELETE` of the resource with the peer's token.
    pub async fn delete(&self) -> Result<reqwest::StatusCode> {
        let response = self
            .http
            .delete(self.resource_url())
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(response.status())
    }

    /// Restarts ICE as a browser does after a network change (`restartIce()`): an offer with
    /// new ICE credentials and candidates, whose ICE part goes to the resource in a `PATCH`
    /// (`If-Match: *`, RFC 9725 §4.3.3); the relay's new credentials and candidates come back
    /// in the `200` and take the place of those of the answer. The resource stays the same.
    /// (A peer built [`ViewerBuilder::through`] a proxy would bypass it after this.)
    pub async fn restart_ice(&self) -> Result<IceRestart> {
        let options = RTCOfferOptions {
            ice_restart: true,
            ..Default::default()
        };
        let offer = self.pc.create_offer(Some(options)).await?;
        let mut gathered = self.pc.gathering_complete_promise().await;
        self.pc.set_local_description(offer).await?;
        tokio::time::timeout(self.patience, gathered.recv())
            .await
            .context("ICE gathering did not finish")?;
        let local = self
            .pc
            .local_description()
            .await
            .context("no local description")?;
        let offered =
            ice_fragment(&local.sdp).context("the restart offer has no ICE credentials")?;
        let sent_at = Instant::now();
        let response = self
            .http
            .patch(self.resource_url())
            .bearer_auth(&self.token)
            .header("content-type", "application/trickle-ice-sdpfrag")
            .header("if-match", "*")
            .body(offered.clone())
            .send()
            .await?;
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answered = response.text().await?;
        ensure!(
            status == reqwest::StatusCode::OK,
            "PATCH (ICE restart): {status}: {answered}"
        );
        let remote = self
            .pc
            .remote_description()
            .await
            .context("no remote description")?;
        let answer = with_ice(&remote.sdp, &answered)?;
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
        Ok(IceRestart {
            offered,
            answered,
            etag: etag.context("no ETag in the 200 of an ICE restart")?,
            answered_in: sent_at.elapsed(),
        })
    }

    /// Closes the connection without telling the relay (a tab closed).
    pub async fn close(&self) {
        // Closing a connection the relay already closed fails harmlessly.
        let _ = self.pc.close().await;
    }
}

/// What an ICE restart ([`Peer::restart_ice`]) sent and got back.
#[derive(Debug, Clone)]
pub struct IceRestart {
    /// The `PATCH` body: the peer's new credentials and candidates.
    pub offered: String,
    /// The `200` body: the relay's.
    pub answered: String,
    /// The new ICE session's entity tag, quotes included.
    pub etag: String,
    /// From sending the `PATCH` to its response.
    pub answered_in: Duration,
}

/// The ICE part of a description as a trickle fragment (RFC 8840): credentials, then the first
/// media section (the one the others are bundled on) with its candidates.
pub fn ice_fragment(description: &str) -> Option<String> {
    let value = |key: &str| {
        description
            .lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::to_owned))
    };
    let (ufrag, pwd) = (value("a=ice-ufrag:")?, value("a=ice-pwd:")?);
    let mut out = format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n");
    let mut section = 0;
    for line in description.lines().map(str::trim) {
        if line.starts_with("m=") {
            section += 1;
        }
        let wanted = line.starts_with("m=")
            || line.starts_with("a=mid:")
            || line.starts_with("a=candidate:")
            || line == "a=end-of-candidates";
        if section == 1 && wanted {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    Some(out)
}

/// `description` with the ICE credentials and candidates of `fragment` instead of its own, one
/// version later: what a WHIP/WHEP client makes of the `200` of an ICE restart.
pub fn with_ice(description: &str, fragment: &str) -> Result<String> {
    let value = |key: &str| {
        fragment
            .lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::to_owned))
    };
    let ufrag = value("a=ice-ufrag:").context("no a=ice-ufrag in the fragment")?;
    let pwd = value("a=ice-pwd:").context("no a=ice-pwd in the fragment")?;
    let candidates: Vec<&str> = fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    let mut out = String::new();
    let mut section = 0;
    let push = |out: &mut String, line: &str| {
        out.push_str(line);
        out.push_str("\r\n");
    };
    for line in description.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            if section == 1 {
                candidates.iter().for_each(|c| push(&mut out, c));
                push(&mut out, "a=end-of-candidates");
            }
            section += 1;
        }
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" || line.is_empty() {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            push(&mut out, &format!("a=ice-ufrag:{ufrag}"));
        } else if line.starts_with("a=ice-pwd:") {
            push(&mut out, &format!("a=ice-pwd:{pwd}"));
        } else if let Some(origin) = line.strip_prefix("o=") {
            let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
            if let Some(version) = fields.get_mut(2).and_then(|v| v.parse::<u64>().ok()) {
                fields[2] = (version + 1).to_string();
            }
            push(&mut out, &format!("o={}", fields.join(" ")));
        } else {
            push(&mut out, line);
        }
    }
    if section == 1 {
        candidates.iter().for_each(|c| push(&mut out, c));
        push(&mut out, "a=end-of-candidates");
    }
    Ok(out)
}

pub struct PublisherBuilder<'a> {
    client: &'a MediaClient,
    url: String,
    token: String,
    video: Option<VideoCodec>,
    simulcast: Vec<String>,
}

impl PublisherBuilder<'_> {
    /// Send the video as simulcast layers named `rids` (lowest first, as a browser lists
    /// them); write each with [`Publisher::write_layer`].
    pub fn simulcast(mut self, rids: &[&str]) -> Self {
        self.simulcast = rids.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    /// Offer this video codec (and Opus).
    pub fn video(mut self, codec: VideoCodec) -> Self {
        self.video = Some(codec);
        self
    }

    /// Offer Opus only.
    pub fn audio_only(mut self) -> Self {
        self.video = None;
        self
    }

    /// Negotiates (`POST` → `201`). Call [`Peer::wait_connected`] before sending.
    pub async fn connect(self) -> Result<Publisher> {
        let client = self.client;
        let simulcast = self.video.is_some() && !self.simulcast.is_empty();
        let api = client.api(media_engine(self.video, simulcast)?)?;
        let pc = client.peer_connection(&api).await?;
        let stream = "testkit".to_owned();
        let layers: Vec<Arc<TrackLocalStaticRTP>> = match self.video {
            Some(codec) if simulcast => self
                .simulcast
                .iter()
                .map(|rid| {
                    Arc::new(TrackLocalStaticRTP::new_with_rid(
                        codec.parameters().capability,
                        "video".to_owned(),
                        rid.clone(),
                        stream.clone(),
                    ))
                })
                .collect(),
            _ => Vec::new(),
        };
        let video = match (self.video, layers.first()) {
            (_, Some(first)) => Some(first.clone()),
            (Some(codec), None) => Some(Arc::new(TrackLocalStaticRTP::new(
                codec.parameters().capability,
                "video".to_owned(),
                stream.clone(),
            ))),
            (None, None) => None,
        };
        let layer_wanted: Vec<Arc<AtomicBool>> = layers
            .iter()
            .map(|_| Arc::new(AtomicBool::new(true)))
            .collect();
        let audio = Arc::new(TrackLocalStaticRTP::new(
            opus().capability,
            "audio".to_owned(),
            stream,
        ));
        let keyframe_requests = Arc::new(AtomicUsize::new(0));
        // A new encoder starts with a keyframe.
        let keyframe_wanted = Arc::new(AtomicBool::new(true));
        if let Some(video) = &video {
            let sender = pc
                .add_transceiver_from_track(
                    video.clone(),
                    one_way(RTCRtpTransceiverDirection::Sendonly),
                )
                .await?
                .sender()
                .await;
            for layer in layers.iter().skip(1) {
                sender.add_encoding(layer.clone()).await?;
            }
            for (layer, wanted) in layers.iter().zip(&layer_wanted) {
                let (sender, wanted) = (sender.clone(), wanted.clone());
                let requests = keyframe_requests.clone();
                let rid = layer.rid().unwrap_or_default().to_owned();
                tokio::spawn(async move {
                    while let Ok((packets, _)) = sender.read_rtcp_simulcast(&rid).await {
                        let n = keyframe_requests_in(&packets);
                        if n > 0 {
                            requests.fetch_add(n, Ordering::SeqCst);
                            wanted.store(true, Ordering::SeqCst);
                        }
                    }
                });
            }
            let (requests, wanted) = (keyframe_requests.clone(), keyframe_wanted.clone());
            tokio::spawn(async move {
                while let Ok((packets, _)) = sender.read_rtcp().await {
                    let n = keyframe_requests_in(&packets);
                    if n > 0 {
                        requests.fetch_add(n, Ordering::SeqCst);
                        wanted.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
        let audio_sender = pc
            .add_transceiver_from_track(
                audio.clone(),
                one_way(RTCRtpTransceiverDirection::Sendonly),
            )
            .await?
            .sender()
            .await;
        // Read so the interceptors see the receiver reports.
        tokio::spawn(async move { while audio_sender.read_rtcp().await.is_ok() {} });
        let peer = client
            .negotiate(pc, &self.url, &self.token, &|answer| Ok(answer))
            .await?;
        let seq = initial_seq();
        let layers = layers
            .into_iter()
            .zip(layer_wanted)
            .map(|(track, wanted)| Layer {
                track,
                seq: AtomicU16::new(initial_seq()),
                wanted,
            })
            .collect();
        Ok(Publisher {
            peer,
            video,
            layers,
            audio,
            video_seq: AtomicU16::new(seq),
            audio_seq: AtomicU16::new(seq),
            keyframe_requests,
            keyframe_wanted,
        })
    }
}

/// PLIs and FIRs among RTCP packets a publisher's sender read.
fn keyframe_requests_in(packets: &[Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>]) -> usize {
    packets
        .iter()
        .filter(|p| {
            let any = p.as_any();
            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
        })
        .count()
}

/// One simulcast layer of a publisher: its own stream, numbering and keyframe requests.
struct Layer {
    track: Arc<TrackLocalStaticRTP>,
    seq: AtomicU16,
    wanted: Arc<AtomicBool>,
}

/// A different first sequence number per publisher, as real encoders have: the relay must
/// re-base them when publishers change.
fn initial_seq() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(7);
    ((nanos + NEXT.fetch_add(7919, Ordering::Relaxed)) % 60_000) as u16
}

/// A WHIP publisher: writes RTP packets on its audio and video tracks and counts the keyframe
/// requests (PLI, FIR) the relay sends it.
pub struct Publisher {
    peer: Peer,
    video: Option<Arc<TrackLocalStaticRTP>>,
    /// Simulcast layers, lowest first (empty without simulcast).
    layers: Vec<Layer>,
    audio: Arc<TrackLocalStaticRTP>,
    video_seq: AtomicU16,
    audio_seq: AtomicU16,
    keyframe_requests: Arc<AtomicUsize>,
    keyframe_wanted: Arc<AtomicBool>,
}

impl Deref for Publisher {
    type Target = Peer;

    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl Publisher {
    /// Writes one small video packet (a whole frame; none from an audio-only publisher) and
    /// one audio packet, both carrying `marker`.
    pub async fn send(&self, marker: u32) -> Result<()> {
        if self.video.is_some() {
            let video = payload(Kind::Video, marker, 0, 70);
            self.write_video(video, marker.wrapping_mul(3000), true)
                .await?;
        }
        let audio = payload(Kind::Audio, marker, 0, 70);
        self.write_audio(audio, marker.wrapping_mul(960)).await
    }

    /// Writes one video packet; `end_of_frame` sets the RTP marker bit.
    pub async fn write_video(
        &self,
        payload: Bytes,
        timestamp: u32,
        end_of_frame: bool,
    ) -> Result<()> {
        let track = self.video.as_ref().context("an audio-only publisher")?;
        let packet = Packet {
            header: Header {
                version: 2,
                marker: end_of_frame,
                sequence_number: next(&self.video_seq),
                timestamp,
                ..Header::default()
            },
            payload,
        };
        track.write_rtp(&packet).await?;
        Ok(())
    }

    /// Writes one video packet on simulcast layer `layer` (0 is the lowest).
    pub async fn write_layer(
        &self,
        layer: usize,
        payload: Bytes,
        timestamp: u32,
        end_of_frame: bool,
    ) -> Result<()> {
        let layer = self.layers.get(layer).context("no such simulcast layer")?;
        let packet = Packet {
            header: Header {
                version: 2,
                marker: end_of_frame,
                sequence_number: next(&layer.seq),
                timestamp,
                ..Header::default()
            },
            payload,
        };
        layer.track.write_rtp(&packet).await?;
        Ok(())
    }

    /// Whether layer `layer`'s next frame should be a keyframe (its first, or one was asked
    /// for since the last call).
    pub fn take_layer_keyframe_request(&self, layer: usize) -> bool {
        self.layers
            .get(layer)
            .is_some_and(|l| l.wanted.swap(false, Ordering::SeqCst))
    }

    /// Writes one audio packet.
    pub async fn write_audio(&self, payload: Bytes, timestamp: u32) -> Result<()> {
        let packet = Packet {
            header: Header {
                version: 2,
                sequence_number: next(&self.audio_seq),
                timestamp,
                ..Header::default()
            },
            payload,
        };
        self.audio.write_rtp(&packet).await?;
        Ok(())
    }

    /// PLIs and FIRs received so far.
    pub fn keyframe_requests(&self) -> usize {
        self.keyframe_requests.load(Ordering::SeqCst)
    }

    /// Whether the next frame should be a keyframe (the first one, or one was asked for since
    /// the last call).
    pub fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::SeqCst)
    }
}

fn next(seq: &AtomicU16) -> u16 {
    seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

/// Called on the track's reader task for each packet, instead of queueing it for
/// [`Viewer::drain`] and friends (a load generator measures arrival times there).
pub type OnPacket = Arc<dyn Fn(Received) + Send + Sync>;

pub struct ViewerBuilder<'a> {
    client: &'a MediaClient,
    url: String,
    token: String,
    only: Option<VideoCodec>,
    audio_only: bool,
    through: Option<&'a LossyProxy>,
    on_packet: Option<OnPacket>,
}

impl<'a> ViewerBuilder<'a> {
    /// A browser that decodes only this video codec (and Opus).
    pub fn only(mut self, codec: VideoCodec) -> Self {
        self.only = Some(codec);
        self
    }

    /// Offer to receive audio only.
    pub fn audio_only(mut self) -> Self {
        self.audio_only = true;
        self
    }

    /// Receive through `proxy`, a lossy UDP hop.
    pub fn through(mut self, proxy: &'a LossyProxy) -> Self {
        self.through = Some(proxy);
        self
    }

    /// Hand every packet to `on_packet` instead of queueing it.
    pub fn on_packet(mut self, on_packet: impl Fn(Received) + Send + Sync + 'static) -> Self {
        self.on_packet = Some(Arc::new(on_packet));
        self
    }

    /// Negotiates (`POST` → `201`). Media flows once [`Peer::wait_connected`] returns.
    pub async fn connect(self) -> Result<Viewer> {
        let client = self.client;
        let pc = match self.only {
            Some(codec) => {
                let api = client.api(media_engine(Some(codec), false)?)?;
                client.peer_connection(&api).await?
            }
            None => client.peer_connection(&client.viewer_api).await?,
        };
        let kinds: &[RTPCodecType] = if self.audio_only {
            &[RTPCodecType::Audio]
        } else {
            &[RTPCodecType::Audio, RTPCodecType::Video]
        };
        for kind in kinds {
            pc.add_transceiver_from_kind(*kind, one_way(RTCRtpTransceiverDirection::Recvonly))
                .await?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let on_packet: OnPacket = self.on_packet.unwrap_or_else(|| {
            Arc::new(move |received| {
                // The viewer was dropped; its tracks end with its connection.
                let _ = tx.send(received);
            })
        });
        pc.on_track(Box::new(move |track, _, _| {
            let on_packet = on_packet.clone();
            tokio::spawn(async move {
                let mime: Arc<str> = track.codec().capability.mime_type.into();
                while let Ok((packet, _)) = track.read_rtp().await {
                    if let Some(received) = Received::parse(&packet, &mime) {
                        on_packet(received);
                    }
                }
            });
            Box::pin(async {})
        }));
        let peer = match self.through {
            Some(proxy) => {
                client
                    .negotiate(pc, &self.url, &self.token, &|answer| proxy.divert(&answer))
                    .await?
            }
            None => {
                client
                    .negotiate(pc, &self.url, &self.token, &|answer| Ok(answer))
                    .await?
            }
        };
        let publisher_state = peer
            .headers
            .get("x-oncolive-publisher")
            .context("no X-Oncolive-Publisher in the 201")?
            .to_str()?
            .to_owned();
        Ok(Viewer {
            peer,
            rx,
            publisher_state,
        })
    }
}

/// A WHEP viewer. Unless it was built with [`ViewerBuilder::on_packet`], what it receives is
/// queued for [`Viewer::next_video`], [`Viewer::drain`] and [`collect_until`].
pub struct Viewer {
    peer: Peer,
    rx: mpsc::UnboundedReceiver<Received>,
    publisher_state: String,
}

impl Deref for Viewer {
    type Target = Peer;

    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl Viewer {
    /// `X-Oncolive-Publisher` of the `201`: `live` or `waiting`.
    pub fn publisher_state(&self) -> &str {
        &self.publisher_state
    }

    /// The next video packet, or `None` after `wait`.
    pub async fn next_video(&mut self, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let r = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()??;
            if r.kind.is_video() {
                return Some(r);
            }
        }
    }

    /// Everything received and not yet taken.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut all = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            all.push(r);
        }
        all
    }
}

/// Sends marker packets every 20 ms until every viewer has seen one (media flows end to end),
/// then returns the next free marker.
pub async fn warm_up(
    publisher: &Publisher,
    viewers: &mut [&mut Viewer],
    mut marker: u32,
) -> Result<u32> {
    let mut seen = vec![false; viewers.len()];
    for _ in 0..(PATIENCE.as_millis() / 20) {
        publisher.send(marker).await?;
        marker += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (i, v) in viewers.iter_mut().enumerate() {
            if v.drain().iter().any(|r| r.kind.is_video()) {
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
pub async fn send_batch(publisher: &Publisher, from: u32, to: u32) -> Result<()> {
    for marker in from..to {
        publisher.send(marker).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Collects what a viewer receives until both its video and its audio reached marker `last`
/// (they arrive on separate tracks, in either order), or [`PATIENCE`] runs out.
pub async fn collect_until(viewer: &mut Viewer, last: u32) -> Vec<Received> {
    let mut got = Vec::new();
    let (mut video_done, mut audio_done) = (false, false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, viewer.rx.recv()).await {
        if r.marker >= last {
            video_done |= r.kind.is_video();
            audio_done |= r.kind == Kind::Audio;
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
    dropped: Arc<AtomicU64>,
    /// UDP datagrams and their payload bytes passed on to the viewer (RTP, RTCP, STUN, DTLS).
    to_viewer: Arc<(AtomicU64, AtomicU64)>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    pub async fn start(drop_of_ten: u64) -> Result<LossyProxy> {
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let port = front.local_addr()?.port();
        let target = Arc::new(Mutex::new(None::<SocketAddr>));
        let dropped = Arc::new(AtomicU64::new(0));
        let to_viewer = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let task = tokio::spawn({
            let target = target.clone();
            let dropped = dropped.clone();
            let to_viewer = to_viewer.clone();
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
                                to_viewer.0.fetch_add(1, Ordering::Relaxed);
                                to_viewer.1.fetch_add(n as u64, Ordering::Relaxed);
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
            to_viewer,
            task,
        })
    }

    /// UDP datagrams and payload bytes (everything above UDP: RTP or RTCP with their SRTP tags,
    /// STUN, DTLS) passed on to the viewer so far.
    pub fn sent_to_viewer(&self) -> (u64, u64) {
        (
            self.to_viewer.0.load(Ordering::Relaxed),
            self.to_viewer.1.load(Ordering::Relaxed),
        )
    }

    /// RTP packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Keeps one IPv4 UDP candidate of the answer, remembers it as the proxy's target and
    /// replaces it with the proxy's own address.
    fn divert(&self, answer: &str) -> Result<String> {
        let mut out = String::new();
        let mut diverted = false;
        for line in answer.split_inclusive('\n') {
            if let Some(rest) = line.trim_end().strip_prefix("a=candidate:") {
                let mut fields: Vec<&str> = rest.split_whitespace().collect();
                let ipv4_udp = fields.len() > 5
                    && fields[2].eq_ignore_ascii_case("udp")
                    && fields[4].parse::<Ipv4Addr>().is_ok();
                if diverted || !ipv4_udp {
                    continue;
                }
                let to: SocketAddr = format!("{}:{}", fields[4], fields[5]).parse()?;
                *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(to);
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
