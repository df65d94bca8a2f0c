//! WHEP: attaching a viewer to the room's shared tracks and relaying its
//! keyframe requests to the publisher.

use std::sync::{Arc, Weak};

use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::TrackLocal;

use crate::budget::Slot;
use crate::engine::{self, Engine, close_pc};
use crate::error::{ApiError, SignalingError};
use crate::keyframe::KeyframeSource;
use crate::room::{PatchLock, Room, Viewer, new_resource_id};
use crate::sdp::Offer;

/// Negotiates a viewer and adds it to `room`. Returns the resource id and the answer.
pub(crate) async fn view(
    engine: &Engine,
    room: &Arc<Room>,
    offer_sdp: String,
    offer: &Offer,
    slot: Slot,
) -> Result<(String, String), ApiError> {
    let (codec, _) = room.video_codec();
    // The crate would refuse it too, with a less helpful message.
    let decodable = offer
        .video
        .iter()
        .any(|c| c.mime_type.eq_ignore_ascii_case(&codec.mime_type));
    if offer.has_video && !decodable {
        return Err(ApiError::BadRequest(
            "unsupported_codec",
            format!(
                "the broadcast is {}, which this offer does not include",
                codec.mime_type
            ),
        ));
    }
    let pc = engine.viewer_peer().await?;
    let id = new_resource_id();
    let (audio_track, video_track) = room.tracks();
    let audio_local: Arc<dyn TrackLocal + Send + Sync> = audio_track;
    let video_local: Arc<dyn TrackLocal + Send + Sync> = video_track.clone();
    // Only what the offer asks for: an audio-only viewer (a weak link, a
    // patient who chose "audio only") has no video sender at all, so the
    // room's video track never writes to it.
    let senders = async {
        let audio = if offer.has_audio {
            Some(pc.add_track(audio_local).await?)
        } else {
            None
        };
        let video = if offer.has_video {
            Some(pc.add_track(video_local).await?)
        } else {
            None
        };
        Ok::<_, webrtc::Error>((audio, video))
    }
    .await;
    let (audio, video) = match senders {
        Ok(senders) => senders,
        Err(err) => {
            close_pc(&pc, &id).await;
            return Err(SignalingError::from(err).into());
        }
    };

    {
        let room = Arc::downgrade(room);
        let id = id.clone();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            tracing::debug!(viewer = %id, ?state, "viewer connection state");
            match state {
                RTCPeerConnectionState::Connected => {
                    if let Some(room) = room.upgrade() {
                        room.request_keyframe(KeyframeSource::ViewerJoin);
                    }
                }
                // Disconnected is when a phone that changed networks restarts
                // ICE (a `PATCH`); only a failed ICE session (no restart in
                // time) or a closed connection ends the viewer.
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    remove(&room, &id);
                }
                _ => {}
            }
            Box::pin(async {})
        }));
    }

    let answer = engine::answer(&pc, &id, offer_sdp, engine.allow_loopback).await?;

    if let Some(audio) = &audio {
        tokio::spawn(read_rtcp(Arc::downgrade(room), audio.clone(), false));
    }
    if let Some(video) = &video {
        tokio::spawn(read_rtcp(Arc::downgrade(room), video.clone(), true));
    }
    let viewer = Viewer {
        id: id.clone(),
        pc,
        patching: PatchLock::default(),
        audio,
        video,
        _slot: slot,
    };
    match room.add_viewer(viewer, &video_track) {
        Ok(None) => {}
        Ok(Some((sender, track))) => {
            let track: Arc<dyn TrackLocal + Send + Sync> = track;
            if let Err(err) = sender.replace_track(Some(track)).await {
                tracing::warn!(viewer = %id, error = %err, "the viewer cannot receive the room's video codec");
            }
        }
        Err((err, viewer)) => {
            viewer.teardown().await;
            return Err(err);
        }
    }
    tracing::info!(session = %room.session, viewer = %id, viewers = room.viewer_count(), "viewer joined");
    Ok((id, answer))
}

/// Takes viewer `id` out of its room and tears it down in the background.
fn remove(room: &Weak<Room>, id: &str) {
    if let Some(room) = room.upgrade()
        && let Some(viewer) = room.remove_viewer(id)
    {
        tracing::info!(session = %room.session, viewer = %id, "viewer left");
        tokio::spawn(viewer.teardown());
    }
}

/// Drains a viewer's RTCP (the interceptors answer NACKs while it is read)
/// and turns PLI/FIR into a keyframe request to the publisher.
async fn read_rtcp(room: Weak<Room>, sender: Arc<RTCRtpSender>, video: bool) {
    while let Ok((packets, _)) = sender.read_rtcp().await {
        if !video {
            continue;
        }
        let wants_keyframe = packets.iter().any(|p| {
            let any = p.as_any();
            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
        });
        if wants_keyframe {
            let Some(room) = room.upgrade() else { break };
            room.request_keyframe(KeyframeSource::ViewerPli);
        }
    }
}
