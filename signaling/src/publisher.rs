//! WHIP: accepting a publisher and forwarding its media into the room's tracks.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use tracing::Instrument;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;
use webrtc::util::MarshalSize;

use crate::engine::{self, Engine, close_pc};
use crate::error::ApiError;
use crate::frames::{KeyframeStarts, VideoFormat};
use crate::keyframe::KeyframeSource;
use crate::kind::Kind;
use crate::layers::{Layer, Layers};
use crate::metrics::Forwarded;
use crate::record::{RecorderHandle, SpanInfo, Tap};
use crate::record_follow::LayerPacket;
use crate::room::{PatchLock, Publisher, Room, new_resource_id};
use crate::sdp::{self, Offer};

/// Where a simulcast publisher's bandwidth estimate starts: enough for its three layers
/// (Chromium turns its top layer on once the estimate covers the two below at their caps,
/// 150 + 500 kbit/s, and the top one's minimum, 600 kbit/s at 1280×720).
const SIMULCAST_START_KBPS: u32 = 1500;

/// Negotiates a publisher for `room` and makes it the room's publisher,
/// replacing (and closing) the previous one. Returns the resource id and the answer.
pub(crate) async fn publish(
    engine: &Engine,
    room: &Arc<Room>,
    offer_sdp: String,
    offer: &Offer,
    recorder: Option<RecorderHandle>,
) -> Result<(String, String), ApiError> {
    let (current, watched) = room.video_codec();
    let video = if offer.has_video {
        let chosen = sdp::choose_publisher_video(&offer.video, &current, watched);
        if chosen.is_none() {
            let offered: Vec<&str> = offer.video.iter().map(|c| c.mime_type.as_str()).collect();
            return Err(ApiError::BadRequest(
                "unsupported_codec",
                format!(
                    "no video codec the relay forwards (VP8, H264, VP9, AV1) in the offer; offered: {}",
                    offered.join(", ")
                ),
            ));
        }
        chosen
    } else {
        None
    };

    let simulcast = video.is_some() && !offer.rids.is_empty();
    let pc = engine.publisher_peer(video.as_ref(), simulcast).await?;
    let id = new_resource_id();
    let generation = room.next_generation();
    let layers = room.new_layers(if simulcast { &offer.rids } else { &[] });
    let span = tracing::info_span!("publisher", session = %room.session, publisher = %id);
    let (tap, recording) = match recorder {
        Some(recorder) => {
            let video = video.as_ref().and_then(|codec| recordable(codec, &span));
            let (tap, gone) = recorder.tap(SpanInfo {
                generation,
                video,
                room: Arc::downgrade(room),
            });
            (Some(tap), Some(gone))
        }
        None => (None, None),
    };

    {
        let room = Arc::downgrade(room);
        let layers = layers.clone();
        let span = span.clone();
        let tap = tap.clone();
        pc.on_track(Box::new(move |remote, _receiver, _transceiver| {
            if let Some(room) = room.upgrade() {
                spawn_forward(room, remote, generation, &layers, tap.clone(), &span);
            }
            Box::pin(async {})
        }));
    }
    {
        let room = Arc::downgrade(room);
        let id = id.clone();
        let span = span.clone();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            let _entered = span.enter();
            tracing::debug!(?state, "publisher connection state");
            if matches!(
                state,
                RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Closed
            ) {
                remove(&room, &id);
            }
            Box::pin(async {})
        }));
    }

    let answer = engine::answer(&pc, &id, offer_sdp, engine.allow_loopback).await?;
    let answer = if simulcast {
        sdp::with_start_bitrate(&answer, SIMULCAST_START_KBPS)
    } else {
        answer
    };

    let publisher = Publisher {
        id: id.clone(),
        generation,
        pc,
        patching: PatchLock::default(),
        layers,
        _recording: recording,
        pulled: None,
    };
    // Before the answer goes out, so the new publisher's first keyframe
    // already reaches the viewers through the new track.
    if let Some(old) = install(room, publisher, video, &span).await? {
        span.in_scope(|| tracing::info!(replaced = %old.id, "publisher replaced"));
        tokio::spawn(async move { close_pc(&old.pc, &old.id).await });
    }
    span.in_scope(|| tracing::info!("publisher accepted"));
    Ok((id, answer))
}

/// Makes `publisher` the room's (a WHIP publisher or an edge's pull) and moves the viewers to
/// its video track if the codec changed. Returns the publisher it replaced, for the caller to
/// close; a room that ended refuses it (closed here).
pub(crate) async fn install(
    room: &Room,
    publisher: Publisher,
    video: Option<crate::sdp::Codec>,
    span: &tracing::Span,
) -> Result<Option<Publisher>, ApiError> {
    let (old, swaps) = match room.install_publisher(publisher, video) {
        Ok(installed) => installed,
        Err((err, publisher)) => {
            close_pc(&publisher.pc, &publisher.id).await;
            return Err(err);
        }
    };
    for (sender, track) in swaps {
        let track: Arc<dyn TrackLocal + Send + Sync> = track;
        if let Err(err) = sender.replace_track(Some(track)).await {
            span.in_scope(
                || tracing::warn!(error = %err, "a viewer cannot receive the new video codec"),
            );
        }
    }
    Ok(old)
}

/// Takes the publisher `id` out of its room (if still current) and closes it.
pub(crate) fn remove(room: &Weak<Room>, id: &str) -> bool {
    let Some(room) = room.upgrade() else {
        return false;
    };
    match room.remove_publisher(id) {
        Some(publisher) => {
            tracing::info!(session = %room.session, publisher = %id, "publisher left");
            tokio::spawn(async move { close_pc(&publisher.pc, &publisher.id).await });
            true
        }
        None => false,
    }
}

/// Starts forwarding a publisher's new track (audio, or one of its video layers) into the
/// room. The recorder gets the audio and every video layer (it records the best that sends).
pub(crate) fn spawn_forward(
    room: Arc<Room>,
    remote: Arc<TrackRemote>,
    generation: u64,
    layers: &Arc<Layers>,
    tap: Option<Arc<Tap>>,
    span: &tracing::Span,
) {
    let layer = match remote.kind() {
        RTPCodecType::Video => {
            let Some(layer) = layers.by_rid(remote.rid()) else {
                span.in_scope(|| {
                    tracing::warn!(
                        rid = remote.rid(),
                        "a video layer the offer did not announce; ignored"
                    )
                });
                return;
            };
            layer.ssrc.store(remote.ssrc(), Ordering::Relaxed);
            if room.viewer_count() > 0 {
                room.request_keyframe(KeyframeSource::PublisherChange, Some(layer.source));
            }
            Some(Source {
                layer: layer.clone(),
                rank: layers
                    .layers
                    .iter()
                    .position(|l| l.source == layer.source)
                    .unwrap_or_default(),
                layers: layers.layers.len(),
                single: layers.layers.len() == 1,
            })
        }
        _ => None,
    };
    tokio::spawn(forward(room, remote, generation, tap, layer).instrument(span.clone()));
}

/// The video layer a forwarding loop carries.
pub(crate) struct Source {
    layer: Arc<Layer>,
    /// Its place in the offer, 0 the smallest, of `layers`.
    rank: usize,
    layers: usize,
    /// The publisher's only layer: viewers take it from any packet (their decoders ask for a
    /// keyframe), as they always did before simulcast.
    single: bool,
}

/// Copies one publisher track into the room's shared track until the
/// publisher goes away or is replaced.
async fn forward(
    room: Arc<Room>,
    remote: Arc<TrackRemote>,
    generation: u64,
    tap: Option<Arc<Tap>>,
    video: Option<Source>,
) {
    let kind = match remote.kind() {
        RTPCodecType::Audio => Kind::Audio,
        RTPCodecType::Video => Kind::Video,
        RTPCodecType::Unspecified => return,
    };
    let track = room.track(kind);
    let counters = Forwarded::new(kind);
    let mut starts = KeyframeStarts::new(VideoFormat::of(&remote.codec().capability.mime_type));
    tracing::info!(kind = kind.label(), codec = %remote.codec().capability.mime_type, ssrc = remote.ssrc(), rid = remote.rid(), "publisher track");
    loop {
        let mut packet = match remote.read_rtp().await {
            Ok((packet, _attributes)) => packet,
            Err(err) => {
                tracing::debug!(kind = kind.label(), error = %err, "publisher track ended");
                break;
            }
        };
        if !room.is_current(generation) {
            break;
        }
        room.media_arrived(generation);
        // Padding only (a browser probing its bandwidth, also on a layer it paused): no media,
        // so neither a layer's activity nor the recorder's; forwarded all the same, since
        // the viewers' sequence numbers run through it.
        let media = !packet.payload.is_empty();
        let keyframe = video.is_some() && starts.check(packet.header.timestamp, &packet.payload);
        // As the publisher sent it: the recorder keeps its own timeline.
        if let Some(tap) = &tap
            && media
        {
            let layer = video.as_ref().map(|video| LayerPacket {
                source: video.layer.source,
                rank: video.rank,
                layers: video.layers,
                keyframe,
            });
            tap.offer(kind, &packet, layer);
        }
        // The publisher's extension ids mean nothing to the viewers; the
        // viewers' own (MID) are added by their senders.
        packet.header.extension = false;
        packet.header.extension_profile = 0;
        packet.header.extensions.clear();
        packet.header.extensions_padding = 0;
        let bytes = packet.header.marshal_size() + packet.payload.len();
        let written = match &video {
            Some(video) => {
                let now = Instant::now();
                if media {
                    video.layer.count(bytes, now);
                }
                track
                    .write_layer(&packet, video.layer.source, video.single || keyframe)
                    .await
            }
            None => {
                room.audio_rewriter()
                    .rewrite(&mut packet.header, generation, Instant::now());
                track.write_rtp(&packet).await
            }
        };
        // An error names viewers whose write failed; they are removed by
        // their own connection-state handlers, the others did get the packet.
        if let Some(err) = written.first_error {
            tracing::trace!(error = %err, "write to some viewers failed");
        }
        counters.add(bytes, written.viewers);
    }
}

/// The recorder's name for a negotiated video codec; `None` (audio is
/// recorded alone) for codecs with no browser-playable container here.
fn recordable(
    codec: &crate::sdp::Codec,
    span: &tracing::Span,
) -> Option<oncolive_media::VideoCodec> {
    let mime = codec.mime_type.to_ascii_lowercase();
    match mime.as_str() {
        "video/h264" => Some(oncolive_media::VideoCodec::H264),
        "video/vp8" => Some(oncolive_media::VideoCodec::Vp8),
        _ => {
            span.in_scope(|| tracing::warn!(codec = %codec.mime_type, "video in this codec is not recorded; audio only"));
            None
        }
    }
}
