//! WHEP: attaching a viewer to the room's shared tracks and relaying its
//! keyframe requests to the publisher.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::TrackLocal;

use crate::budget::Slot;
use crate::engine::{self, Engine, close_pc};
use crate::error::{ApiError, SignalingError};
use crate::keyframe::KeyframeSource;
use crate::layers::Selection;
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
    // The viewer's layer selection, keyed by its video SSRC (what its track binding knows).
    let video_ssrc = match &video {
        Some(sender) => sender
            .get_parameters()
            .await
            .encodings
            .first()
            .map(|e| e.ssrc),
        None => None,
    };
    let selection = video_ssrc.map(|ssrc| {
        let selection = room.selection(ssrc);
        selection.decide(&room.layers(), Instant::now());
        (ssrc, selection)
    });

    {
        let room = Arc::downgrade(room);
        let id = id.clone();
        let joining = selection.as_ref().map(|(_, s)| s.clone());
        pc.on_peer_connection_state_change(Box::new(move |state| {
            tracing::debug!(viewer = %id, ?state, "viewer connection state");
            match state {
                RTCPeerConnectionState::Connected => {
                    if let Some(room) = room.upgrade() {
                        let layer = joining.as_ref().and_then(|s| s.target());
                        room.request_keyframe(KeyframeSource::ViewerJoin, layer);
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

    let answer = match engine::answer(&pc, &id, offer_sdp, engine.allow_loopback).await {
        Ok(answer) => answer,
        Err(err) => {
            if let Some(ssrc) = video_ssrc {
                room.forget_selection(ssrc);
            }
            return Err(err);
        }
    };

    if let Some(audio) = &audio {
        tokio::spawn(drain_rtcp(audio.clone()));
    }
    if let (Some(video), Some((ssrc, selection))) = (&video, &selection) {
        tokio::spawn(read_video_rtcp(
            Arc::downgrade(room),
            video.clone(),
            *ssrc,
            selection.clone(),
        ));
    }
    let viewer = Viewer {
        id: id.clone(),
        pc,
        patching: PatchLock::default(),
        audio,
        video,
        video_ssrc,
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
            if let Some(ssrc) = viewer.video_ssrc {
                room.forget_selection(ssrc);
            }
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

/// Drains a viewer's audio RTCP (the interceptors answer NACKs and read reports while it is read).
async fn drain_rtcp(sender: Arc<RTCRtpSender>) {
    while sender.read_rtcp().await.is_ok() {}
}

/// How often a viewer's layer is decided again without any RTCP (a layer appears or vanishes).
const DECIDE_EVERY: Duration = Duration::from_millis(500);

/// Reads a viewer's video RTCP: PLI/FIR become keyframe requests to the publisher (for the
/// layer the viewer gets), receiver reports and REMB drive its layer choice.
async fn read_video_rtcp(
    room: Weak<Room>,
    sender: Arc<RTCRtpSender>,
    ssrc: u32,
    selection: Arc<Selection>,
) {
    let mut tick = tokio::time::interval(DECIDE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let packets = tokio::select! {
            read = sender.read_rtcp() => match read {
                Ok((packets, _)) => Some(packets),
                Err(_) => break,
            },
            _ = tick.tick() => None,
        };
        let Some(room) = room.upgrade() else { break };
        let now = Instant::now();
        let layers = room.layers();
        let mut wants_keyframe = false;
        for packet in packets.iter().flatten() {
            let any = packet.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                wants_keyframe = true;
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                for report in rr.reports.iter().filter(|r| r.ssrc == ssrc) {
                    selection.report(report.fraction_lost, &layers, now);
                }
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                for report in sr.reports.iter().filter(|r| r.ssrc == ssrc) {
                    selection.report(report.fraction_lost, &layers, now);
                }
            } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>()
                && remb.ssrcs.contains(&ssrc)
            {
                selection.remb(remb.bitrate as u64);
            }
        }
        if wants_keyframe {
            room.request_keyframe(KeyframeSource::ViewerPli, selection.current());
        }
        if let Some(target) = selection.decide(&layers, now) {
            room.request_keyframe(KeyframeSource::LayerSwitch, Some(target));
        }
    }
}
