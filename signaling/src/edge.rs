//! Origin–edge: a node whose viewers want a session that another node receives pulls the stream
//! once from that node (the origin) over WHEP, with a node credential, and fans it out to its own
//! viewers as if it were the session's publisher. Keyframe requests of its viewers go through
//! the room's gate to the pull, and so to the origin, whose own gate coalesces them toward the
//! expert. When the last local viewer leaves, the pull is released; when the origin changes (the
//! expert reconnected to another node), a new pull replaces the old one in the room, and the
//! room's rewriters keep every viewer's sequence numbers and timestamps continuous, so viewers
//! do not renegotiate.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;

use crate::auth::Origin;
use crate::engine::{Engine, close_pc};
use crate::error::{ApiError, SignalingError};
use crate::publisher;
use crate::room::{PatchLock, Publisher, Pulled, Room, new_resource_id};
use crate::sdp;

/// Longest wait for the origin's answer.
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Pulls the session from `origin` into `room`, replacing whatever the room's publisher was.
pub(crate) async fn pull(
    engine: &Engine,
    http: &reqwest::Client,
    room: &Arc<Room>,
    origin: &Origin,
) -> Result<(), ApiError> {
    let pc = engine.viewer_peer().await?;
    let id = new_resource_id();
    let span = tracing::info_span!("pull", session = %room.session, origin = %origin.whep_url);
    for kind in [RTPCodecType::Audio, RTPCodecType::Video] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                send_encodings: Vec::new(),
            }),
        )
        .await
        .map_err(SignalingError::from)?;
    }
    let generation = room.next_generation();
    // The origin sends one layer to a pull: its top one (see `prefer_high`).
    let layers = room.new_layers(&[]);
    {
        let room = Arc::downgrade(room);
        let layers = layers.clone();
        let span = span.clone();
        pc.on_track(Box::new(move |remote, _receiver, _transceiver| {
            if let Some(room) = room.upgrade() {
                publisher::spawn_forward(room, remote, generation, &layers, None, &span);
            }
            Box::pin(async {})
        }));
    }
    {
        let room = Arc::downgrade(room);
        let id = id.clone();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            if matches!(
                state,
                RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Closed
            ) {
                publisher::remove(&room, &id);
            }
            Box::pin(async {})
        }));
    }
    let negotiated = async {
        let offer = pc.create_offer(None).await.map_err(SignalingError::from)?;
        let mut gathered = pc.gathering_complete_promise().await;
        pc.set_local_description(offer)
            .await
            .map_err(SignalingError::from)?;
        let _ = tokio::time::timeout(ORIGIN_TIMEOUT, gathered.recv()).await;
        let local = pc
            .local_description()
            .await
            .ok_or(SignalingError::GatheringTimeout)?;
        let res = http
            .post(&origin.whep_url)
            .header(CONTENT_TYPE, "application/sdp")
            .header(AUTHORIZATION, format!("Bearer {}", origin.token))
            .body(local.sdp)
            .timeout(ORIGIN_TIMEOUT)
            .send()
            .await
            .map_err(|e| ApiError::OriginUnavailable(e.to_string()))?;
        let status = res.status();
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = res
            .text()
            .await
            .map_err(|e| ApiError::OriginUnavailable(e.to_string()))?;
        if status != reqwest::StatusCode::CREATED {
            return Err(ApiError::OriginUnavailable(format!(
                "the origin answered {status}: {}",
                answer.chars().take(200).collect::<String>()
            )));
        }
        let video = sdp::parse_offer(&answer)
            .ok()
            .and_then(|a| a.video.into_iter().next());
        let answer = RTCSessionDescription::answer(answer)
            .map_err(|e| ApiError::OriginUnavailable(format!("not an SDP answer: {e}")))?;
        pc.set_remote_description(answer)
            .await
            .map_err(|e| ApiError::OriginUnavailable(format!("answer rejected: {e}")))?;
        Ok::<_, ApiError>((video, location))
    }
    .await;
    let (video, location) = match negotiated {
        Ok(done) => done,
        Err(err) => {
            close_pc(&pc, &id).await;
            return Err(err);
        }
    };
    span.in_scope(|| tracing::info!(resource = ?location, "pulling from the origin"));
    let resource_url = location
        .as_deref()
        .and_then(|l| resolve(&origin.whep_url, l));
    if let Some(url) = &resource_url {
        prefer_high(http, url, &origin.token).await;
    }
    let publisher = Publisher {
        id: id.clone(),
        generation,
        pc,
        patching: PatchLock::default(),
        layers,
        _recording: None,
        pulled: Some(Pulled {
            whep_url: origin.whep_url.clone(),
            resource_url,
            token: origin.token.clone(),
        }),
    };
    if let Some(old) = publisher::install(room, publisher, video, &span).await? {
        let http = http.clone();
        tokio::spawn(async move { release(&http, old).await });
    }
    Ok(())
}

/// Closes a publisher; a pull also tells its origin (`DELETE` of its resource), so the origin
/// frees its viewer at once rather than when ICE notices.
pub(crate) async fn release(http: &reqwest::Client, publisher: Publisher) {
    if let Some(Pulled {
        resource_url: Some(url),
        token,
        ..
    }) = &publisher.pulled
    {
        let deleted = http
            .delete(url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .timeout(ORIGIN_TIMEOUT)
            .send()
            .await;
        if let Err(err) = deleted {
            tracing::debug!(%url, error = %err, "releasing a pull at its origin");
        }
    }
    close_pc(&publisher.pc, &publisher.id).await;
}

/// Asks the origin for its top layer on this pull (WHEP's layer extension, `…/layer`): the
/// edge's viewers get the full picture, and its own viewers on weak links fall back to audio
/// only. Without it the origin's auto choice would start the pull on the lowest layer.
async fn prefer_high(http: &reqwest::Client, resource_url: &str, token: &str) {
    let asked = http
        .post(format!("{resource_url}/layer"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"prefer":"high"}"#)
        .timeout(ORIGIN_TIMEOUT)
        .send()
        .await;
    match asked {
        Ok(res) if res.status().is_success() => {}
        Ok(res) => tracing::warn!(status = %res.status(), "the origin refused the pull's layer"),
        Err(err) => tracing::warn!(error = %err, "asking the origin for the pull's layer"),
    }
}

/// `location` (absolute, or a path on the origin) as an absolute URL.
fn resolve(whep_url: &str, location: &str) -> Option<String> {
    reqwest::Url::parse(whep_url)
        .ok()?
        .join(location)
        .ok()
        .map(String::from)
}
