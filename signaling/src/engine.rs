//! Construction of `webrtc` peer connections: ICE settings, codecs, interceptors,
//! the non-trickle offer/answer exchange and the client's trickled candidates.

use std::sync::Arc;
use std::time::Duration;

use webrtc::api::interceptor_registry::{configure_rtcp_reports, configure_twcc_receiver_only};
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::ice::candidate::candidate_base::unmarshal_candidate;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::interceptor::nack::generator::Generator;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::RTCPFeedback;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RTPCodecType,
};

use crate::config::RelayConfig;
use crate::error::{ApiError, SignalingError};
use crate::exposure::{self, Verdict};
use crate::sdp::{self, Codec, Trickle, attribute_value};

/// Longest wait for our own ICE candidates before answering (host candidates
/// only, so this is normally a few milliseconds).
const GATHERING_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds peer connections for publishers and viewers.
pub(crate) struct Engine {
    settings: SettingEngine,
    /// Whether loopback addresses are announced and accepted from clients
    /// (decided once at start, see [`exposure::loopback_allowed`]).
    pub allow_loopback: bool,
    /// Viewers all accept the same codecs, so they share one API.
    viewer_api: API,
}

impl Engine {
    pub(crate) fn new(config: &RelayConfig) -> Result<Self, SignalingError> {
        let allow_loopback =
            exposure::loopback_allowed(&config.interfaces, &exposure::host_interfaces());
        let settings = setting_engine(config, allow_loopback)?;
        let mut media = MediaEngine::default();
        media.register_default_codecs()?;
        let viewer_api = build_api(media, settings.clone())?;
        tracing::info!(allow_loopback, interfaces = ?config.interfaces, "relay network exposure");
        Ok(Self {
            settings,
            allow_loopback,
            viewer_api,
        })
    }

    pub(crate) async fn viewer_peer(&self) -> Result<Arc<RTCPeerConnection>, SignalingError> {
        Ok(Arc::new(
            self.viewer_api
                .new_peer_connection(RTCConfiguration::default())
                .await?,
        ))
    }

    /// A peer connection that accepts Opus and exactly one video codec, so a
    /// publisher cannot switch codecs under the viewers' feet; with `simulcast`, the
    /// video's layers too (the `rid` header extensions name each layer's stream).
    pub(crate) async fn publisher_peer(
        &self,
        video: Option<&Codec>,
        simulcast: bool,
    ) -> Result<Arc<RTCPeerConnection>, SignalingError> {
        let mut media = MediaEngine::default();
        if simulcast {
            for uri in [
                webrtc::sdp::extmap::SDES_RTP_STREAM_ID_URI,
                webrtc::sdp::extmap::SDES_REPAIR_RTP_STREAM_ID_URI,
            ] {
                media.register_header_extension(
                    RTCRtpHeaderExtensionCapability {
                        uri: uri.to_owned(),
                    },
                    RTPCodecType::Video,
                    None,
                )?;
            }
        }
        media.register_codec(
            RTCRtpCodecParameters {
                capability: opus_capability(),
                payload_type: 111,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )?;
        if let Some(codec) = video {
            let mut capability = codec.capability();
            capability.rtcp_feedback = video_feedback();
            media.register_codec(
                RTCRtpCodecParameters {
                    capability,
                    payload_type: codec.payload_type,
                    ..Default::default()
                },
                RTPCodecType::Video,
            )?;
        }
        let api = build_api(media, self.settings.clone())?;
        Ok(Arc::new(
            api.new_peer_connection(RTCConfiguration::default()).await?,
        ))
    }
}

pub(crate) fn opus_capability() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    [("ccm", "fir"), ("nack", ""), ("nack", "pli")]
        .into_iter()
        .map(|(typ, parameter)| RTCPFeedback {
            typ: typ.to_owned(),
            parameter: parameter.to_owned(),
        })
        .collect()
}

fn build_api(mut media: MediaEngine, settings: SettingEngine) -> Result<API, SignalingError> {
    // The MID extension lets the relay demultiplex publishers that announce no SSRCs.
    for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: webrtc::sdp::extmap::SDES_MID_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    // NACK generator/responder, sender/receiver reports, TWCC feedback to publishers: the
    // crate's defaults, but for the responder's history.
    let registry = configure_nack(Registry::new(), &mut media);
    let registry = configure_rtcp_reports(registry);
    let registry = configure_twcc_receiver_only(registry, &mut media)?;
    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build())
}

/// Packets of history a NACK responder keeps per outgoing stream (2^10): about 9 s of a 1 Mbit/s
/// stream, 3.5 s at 2.5 Mbit/s, far more than a retransmission can still arrive in time for.
/// The crate's default, 2^13, costs about 0.9 MiB per viewer in `Option<Packet>` slots alone.
const NACK_HISTORY_LOG2: u8 = 10;

/// `webrtc`'s `configure_nack` with the relay's own responder (limited resends, see
/// [`crate::nack`]) keeping [`NACK_HISTORY_LOG2`] packets.
fn configure_nack(mut registry: Registry, media: &mut MediaEngine) -> Registry {
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RTPCodecType::Video,
        );
    }
    registry.add(Box::new(crate::nack::ResponderBuilder {
        history_log2: NACK_HISTORY_LOG2,
    }));
    registry.add(Box::new(Generator::builder()));
    registry
}

fn setting_engine(
    config: &RelayConfig,
    allow_loopback: bool,
) -> Result<SettingEngine, SignalingError> {
    let mut settings = SettingEngine::default();
    // mDNS needs a multicast-capable interface, and hides nothing on a server.
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_network_types(vec![NetworkType::Udp4, NetworkType::Udp6]);
    settings.set_include_loopback_candidate(allow_loopback);
    // Link-local, multicast and unspecified addresses are never announced:
    // no client can use them, and they tell strangers about the host's links.
    settings.set_ip_filter(Box::new(move |ip| {
        exposure::check_ip(ip, allow_loopback).is_ok()
    }));
    // Notice vanished peers sooner than the 25 s default; DELETE is the fast path.
    settings.set_ice_timeouts(
        Some(Duration::from_secs(5)),
        Some(Duration::from_secs(10)),
        Some(Duration::from_secs(2)),
    );
    if let Some((min, max)) = config.udp_port_range {
        if min == 0 || min > max {
            return Err(SignalingError::Config(format!(
                "UDP port range {min}-{max} is empty"
            )));
        }
        let ephemeral = EphemeralUDP::new(min, max)
            .map_err(|err| SignalingError::Config(format!("UDP port range {min}-{max}: {err}")))?;
        settings.set_udp_network(UDPNetwork::Ephemeral(ephemeral));
    }
    if !config.public_ips.is_empty() {
        let ips = config.public_ips.iter().map(ToString::to_string).collect();
        settings.set_nat_1to1_ips(ips, RTCIceCandidateType::Host);
    }
    if !config.interfaces.is_empty() {
        let allowed = config.interfaces.clone();
        settings.set_interface_filter(Box::new(move |name: &str| {
            allowed.iter().any(|a| a == name)
        }));
    }
    Ok(settings)
}

/// Closes a peer connection, giving up after a few seconds (the peer may be gone).
pub(crate) async fn close_pc(pc: &RTCPeerConnection, id: &str) {
    match tokio::time::timeout(Duration::from_secs(5), pc.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(peer = %id, error = %err, "closing a peer connection"),
        Err(_) => tracing::warn!(peer = %id, "closing a peer connection timed out"),
    }
}

/// Answers `offer` on `pc` and waits for ICE gathering, so the returned answer
/// carries the relay's candidates (OBS and aiortc do not trickle). On failure
/// the connection (peer `id`) is closed.
pub(crate) async fn answer(
    pc: &RTCPeerConnection,
    id: &str,
    offer: String,
    allow_loopback: bool,
) -> Result<String, ApiError> {
    let answered = async {
        let offer = usable_offer(&offer, allow_loopback)?;
        let answer = negotiate_answer(pc, offer).await?;
        if !answer.lines().any(|l| l.starts_with("a=candidate:")) {
            tracing::warn!(peer = %id, "no ICE candidate gathered (UDP ports exhausted?)");
            return Err(ApiError::NoCandidates);
        }
        Ok(answer)
    }
    .await;
    if answered.is_err() {
        close_pc(pc, id).await;
    }
    answered
}

/// The offer without the candidates the relay refuses to check. An offer
/// that names candidates, all of them refused, cannot work and is refused.
fn usable_offer(offer: &str, allow_loopback: bool) -> Result<String, ApiError> {
    let filtered = exposure::filter_offer(offer, allow_loopback);
    match filtered.refused {
        Some((address, why)) if filtered.kept == 0 => Err(ApiError::ForbiddenCandidate(format!(
            "the offer's candidates are all refused: {address} is {why}"
        ))),
        Some((address, why)) => {
            tracing::debug!(%address, %why, "refused candidates removed from an offer");
            Ok(filtered.sdp)
        }
        None => Ok(filtered.sdp),
    }
}

async fn negotiate_answer(pc: &RTCPeerConnection, offer: String) -> Result<String, ApiError> {
    let offer = RTCSessionDescription::offer(offer)
        .map_err(|err| ApiError::bad_sdp(format!("not an SDP offer: {err}")))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|err| ApiError::bad_sdp(format!("offer rejected: {err}")))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|err| ApiError::bad_sdp(format!("no answer possible for this offer: {err}")))?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(answer)
        .await
        .map_err(|err| ApiError::bad_sdp(format!("offer not usable: {err}")))?;
    tokio::time::timeout(GATHERING_TIMEOUT, gathered.recv())
        .await
        .map_err(|_| ApiError::from(SignalingError::GatheringTimeout))?;
    let local = pc
        .local_description()
        .await
        .ok_or(ApiError::from(SignalingError::GatheringTimeout))?;
    Ok(local.sdp)
}

/// What a `PATCH` did to a peer connection.
#[derive(Debug)]
pub(crate) enum Patched {
    /// The fragment's candidates joined the current ICE session.
    Trickled,
    /// A new ICE session: the relay's credentials and candidates as a trickle
    /// fragment.
    Restarted(String),
}

/// Applies a client's `PATCH` fragment to `pc`: late candidates for the
/// current ICE session (trickle, RFC 8840), or new credentials (an ICE
/// restart, RFC 9725 §4.3.3). Everything is checked before anything changes,
/// so a refused fragment leaves the current ICE session as it was. The caller
/// keeps `PATCH`es of one peer from overlapping.
pub(crate) async fn patch(
    pc: &RTCPeerConnection,
    trickle: Trickle,
    allow_loopback: bool,
) -> Result<Patched, ApiError> {
    let candidates = usable_candidates(&trickle, allow_loopback)?;
    let remote = pc
        .remote_description()
        .await
        .ok_or(ApiError::ResourceNotFound)?;
    let current_ufrag = attribute_value(&remote.sdp, "ice-ufrag");
    let current_pwd = attribute_value(&remote.sdp, "ice-pwd");
    match (trickle.ufrag.as_deref(), trickle.pwd.as_deref()) {
        (None, Some(_)) => Err(ApiError::bad_sdp(
            "an ICE restart needs a=ice-ufrag along with a=ice-pwd",
        )),
        (Some(ufrag), Some(pwd)) if (Some(ufrag), Some(pwd)) != (current_ufrag, current_pwd) => {
            sdp::check_credentials(ufrag, pwd).map_err(ApiError::bad_sdp)?;
            let offer = sdp::restarted_offer(&remote.sdp, ufrag, pwd);
            let local = negotiate_answer(pc, offer).await?;
            add_candidates(pc, candidates).await;
            if !local.lines().any(|l| l.starts_with("a=candidate:")) {
                tracing::warn!(
                    "no ICE candidate gathered for an ICE restart (UDP ports exhausted?)"
                );
                return Err(ApiError::NoCandidates);
            }
            let fragment = sdp::ice_fragment(&local).ok_or(ApiError::NoCandidates)?;
            Ok(Patched::Restarted(fragment))
        }
        (Some(ufrag), None) if Some(ufrag) != current_ufrag => Err(ApiError::StaleIceSession),
        // Trickle, with or without the current credentials (RFC 8840 fragments
        // may carry both): a retried restart whose answer was lost lands here
        // too, and the client restarts again with new credentials.
        _ => {
            add_candidates(pc, candidates).await;
            Ok(Patched::Trickled)
        }
    }
}

/// The fragment's candidates the relay will check, each already parsed once,
/// so that adding them cannot fail half-way. A refused one refuses all.
fn usable_candidates(
    trickle: &Trickle,
    allow_loopback: bool,
) -> Result<Vec<RTCIceCandidateInit>, ApiError> {
    let mut usable = Vec::with_capacity(trickle.candidates.len());
    for candidate in &trickle.candidates {
        match exposure::judge_candidate(&candidate.line, allow_loopback) {
            Verdict::Use => {}
            Verdict::Ignore => continue,
            Verdict::Refuse { address, why } => {
                return Err(ApiError::ForbiddenCandidate(format!(
                    "candidate refused: {address} is {why}"
                )));
            }
        }
        let value = candidate
            .line
            .strip_prefix("candidate:")
            .unwrap_or(&candidate.line);
        if let Err(err) = unmarshal_candidate(value) {
            return Err(ApiError::BadRequest(
                "invalid_candidate",
                format!("candidate rejected: {err}"),
            ));
        }
        usable.push(RTCIceCandidateInit {
            candidate: candidate.line.clone(),
            sdp_mid: candidate.mid.clone(),
            sdp_mline_index: candidate.mline_index,
            username_fragment: trickle.ufrag.clone(),
        });
    }
    Ok(usable)
}

async fn add_candidates(pc: &RTCPeerConnection, candidates: Vec<RTCIceCandidateInit>) {
    for candidate in candidates {
        // Parsed before; what remains is the agent being closed under us.
        if let Err(err) = pc.add_ice_candidate(candidate).await {
            tracing::debug!(error = %err, "adding a trickled candidate");
        }
    }
}
