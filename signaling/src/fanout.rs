//! A room's shared track: the publisher's packet, written once by the forwarding loop, sent to
//! every viewer bound to it, each with its own SSRC, payload type and MID.
//!
//! `webrtc`'s `TrackLocalStaticRTP` does the same on one copy of the packet for all its
//! viewers, and sets each viewer's MID header extension on that copy without removing the
//! previous viewer's. A viewer whose offer numbered its extensions differently from the viewers
//! bound before it (Firefox after Chrome, or an edge's pull, whose numbers are the relay's) got
//! the previous viewer's MID under an id it uses for something else. Measured with the
//! origin–edge load test: every viewer of the origin bound after an edge's pull received
//! nothing. Here each viewer's packet carries exactly its own extensions.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::track::track_local::{TrackLocal, TrackLocalContext, TrackLocalWriter};

use crate::layers::{Selection, Selections};

/// One viewer's end of the track.
struct Binding {
    /// The sender's id (what `unbind` names).
    id: String,
    ssrc: u32,
    payload_type: u8,
    /// The negotiated MID extension's id and this sender's MID, when negotiated.
    mid: Option<(u8, Bytes)>,
    /// Whether the sender is paused (`webrtc`'s own flag, read through a closure because its
    /// type comes from a crate we do not name).
    paused: Box<dyn Fn() -> bool + Send + Sync>,
    writer: Arc<dyn TrackLocalWriter + Send + Sync>,
    /// A video viewer's choice of layer and its own numbering (`None` on audio tracks, whose
    /// numbering the room rewrites once for all).
    selection: Option<Arc<Selection>>,
}

/// What one write did: how many viewers got the packet, and the first failure, if any.
pub(crate) struct Written {
    pub viewers: usize,
    pub first_error: Option<webrtc::Error>,
}

pub(crate) struct FanoutTrack {
    codec: RTCRtpCodecCapability,
    id: String,
    stream_id: String,
    /// Copy-on-write: a write takes the current list without waiting for a bind.
    bindings: RwLock<Arc<Vec<Arc<Binding>>>>,
    /// The room's viewers' layer selections (video tracks only).
    selections: Option<Arc<Selections>>,
}

impl FanoutTrack {
    pub(crate) fn new(codec: RTCRtpCodecCapability, id: &str, stream_id: &str) -> FanoutTrack {
        FanoutTrack {
            codec,
            id: id.to_owned(),
            stream_id: stream_id.to_owned(),
            bindings: RwLock::new(Arc::new(Vec::new())),
            selections: None,
        }
    }

    /// A video track: each viewer bound to it gets the layer its selection names.
    pub(crate) fn video(
        codec: RTCRtpCodecCapability,
        stream_id: &str,
        selections: Arc<Selections>,
    ) -> FanoutTrack {
        FanoutTrack {
            selections: Some(selections),
            ..FanoutTrack::new(codec, "video", stream_id)
        }
    }

    fn bindings(&self) -> Arc<Vec<Arc<Binding>>> {
        self.bindings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn change(&self, f: impl FnOnce(&mut Vec<Arc<Binding>>)) {
        let mut current = self.bindings.write().unwrap_or_else(|e| e.into_inner());
        let mut next = current.as_ref().clone();
        f(&mut next);
        *current = Arc::new(next);
    }

    /// Sends `packet` to every bound viewer that is not paused. A viewer whose write fails is
    /// skipped (its connection's state handler removes it); the others get the packet.
    pub(crate) async fn write_rtp(&self, packet: &Packet) -> Written {
        self.write(packet, None).await
    }

    /// Sends a video packet of layer `source` to the viewers whose selection takes it;
    /// `switch_here`: a viewer waiting for this layer may start at this packet.
    pub(crate) async fn write_layer(
        &self,
        packet: &Packet,
        source: u64,
        switch_here: bool,
    ) -> Written {
        self.write(packet, Some((source, switch_here))).await
    }

    async fn write(&self, packet: &Packet, layer: Option<(u64, bool)>) -> Written {
        let mut written = 0;
        let mut first_error = None;
        let now = Instant::now();
        for binding in self.bindings().iter() {
            if (binding.paused)() {
                continue;
            }
            // The payload is shared; only the header is per viewer.
            let mut own = packet.clone();
            if let (Some(selection), Some((source, switch_here))) = (&binding.selection, layer)
                && !selection.admit(&mut own.header, source, switch_here, now)
            {
                continue;
            }
            own.header.ssrc = binding.ssrc;
            own.header.payload_type = binding.payload_type;
            if let Some((id, mid)) = &binding.mid
                && let Err(err) = own.header.set_extension(*id, mid.clone())
            {
                first_error.get_or_insert(webrtc::Error::Rtp(err));
                continue;
            }
            match binding.writer.write_rtp(&own).await {
                Ok(_) => written += 1,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        Written {
            viewers: written,
            first_error,
        }
    }

    #[cfg(test)]
    fn bound(&self) -> usize {
        self.bindings().len()
    }
}

/// The negotiated codec this track's packets go out as: the same MIME type and format
/// parameters, else the same MIME type (as `webrtc`'s own tracks match).
fn matching_codec(
    ours: &RTCRtpCodecCapability,
    negotiated: &[RTCRtpCodecParameters],
) -> Option<RTCRtpCodecParameters> {
    let same_type =
        |c: &&RTCRtpCodecParameters| c.capability.mime_type.eq_ignore_ascii_case(&ours.mime_type);
    negotiated
        .iter()
        .filter(same_type)
        .find(|c| c.capability.sdp_fmtp_line == ours.sdp_fmtp_line)
        .or_else(|| negotiated.iter().find(same_type))
        .cloned()
}

#[async_trait]
impl TrackLocal for FanoutTrack {
    async fn bind(&self, t: &TrackLocalContext) -> webrtc::error::Result<RTCRtpCodecParameters> {
        let codec = matching_codec(&self.codec, t.codec_parameters())
            .ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        let mid = t
            .header_extensions()
            .iter()
            .find(|e| e.uri == webrtc::sdp::extmap::SDES_MID_URI)
            .zip(t.mid())
            .map(|(e, mid)| (e.id as u8, Bytes::copy_from_slice(mid.as_bytes())));
        let binding = Arc::new(Binding {
            id: t.id(),
            ssrc: t.ssrc(),
            payload_type: codec.payload_type,
            mid,
            paused: {
                let flag = t.paused();
                Box::new(move || flag.load(Ordering::SeqCst))
            },
            writer: t.write_stream(),
            selection: self
                .selections
                .as_ref()
                .map(|all| all.get_or_create(t.ssrc())),
        });
        self.change(|all| all.push(binding));
        Ok(codec)
    }

    async fn unbind(&self, t: &TrackLocalContext) -> webrtc::error::Result<()> {
        let id = t.id();
        let mut found = false;
        self.change(|all| {
            let before = all.len();
            all.retain(|b| b.id != id);
            found = all.len() < before;
        });
        if found {
            Ok(())
        } else {
            Err(webrtc::Error::ErrUnbindFailed)
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        &self.stream_id
    }

    fn kind(&self) -> RTPCodecType {
        if self.codec.mime_type.starts_with("audio/") {
            RTPCodecType::Audio
        } else if self.codec.mime_type.starts_with("video/") {
            RTPCodecType::Video
        } else {
            RTPCodecType::Unspecified
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(mime: &str, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: mime.to_owned(),
                clock_rate: 90_000,
                sdp_fmtp_line: fmtp.to_owned(),
                ..Default::default()
            },
            payload_type: pt,
            ..Default::default()
        }
    }

    #[test]
    fn the_same_format_wins_then_the_same_type() {
        let ours = codec(
            "video/H264",
            "packetization-mode=1;profile-level-id=42e01f",
            0,
        )
        .capability;
        let offered = [
            codec("video/VP8", "", 96),
            codec(
                "video/H264",
                "packetization-mode=1;profile-level-id=640032",
                102,
            ),
            codec(
                "video/H264",
                "packetization-mode=1;profile-level-id=42e01f",
                106,
            ),
        ];
        assert_eq!(
            matching_codec(&ours, &offered).map(|c| c.payload_type),
            Some(106)
        );
        assert_eq!(
            matching_codec(&ours, &offered[..2]).map(|c| c.payload_type),
            Some(102)
        );
        assert!(matching_codec(&ours, &offered[..1]).is_none());
        let vp8 = codec("video/vp8", "", 0).capability;
        assert_eq!(
            matching_codec(&vp8, &offered).map(|c| c.payload_type),
            Some(96)
        );
    }

    #[test]
    fn a_new_track_has_no_viewer() {
        let track = FanoutTrack::new(codec("audio/opus", "", 111).capability, "audio", "s");
        assert_eq!(track.bound(), 0);
        assert_eq!(track.kind(), RTPCodecType::Audio);
    }
}
