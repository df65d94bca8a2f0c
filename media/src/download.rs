//! One file of a recording part, for `<video src>` and the hospital's archive: the part's
//! init segment, then (for MP4) a segment index, then its media segments, as they are stored.
//!
//! A part's file keeps the recording's timeline: its first frame is at the part's start in the
//! recording (a second part may begin at minute 12), and it declares its end there, as
//! ffprobe and Chromium read an MP4 whose first fragment starts late. A chapter's `at_ms` is
//! then a position in whichever part holds it, and a player shows time into the broadcast.
//!
//! Fragmented MP4 needs no rewriting to be one playable file: `ftyp`+`moov` followed by
//! `moof`+`mdat` pairs is a valid MP4. What a progressive player lacks is where each fragment
//! is, to seek without reading every one before it: a `sidx` box (ISO/IEC 14496-12 §8.16.3)
//! right after the `moov` gives each segment's size, duration and that it starts with a
//! keyframe. It is computed from the manifest on each request; nothing is stored twice. The
//! init is served with the part's end filled in (`mvhd`, `mehd`): without it players take
//! the first fragment's length for the file's.
//!
//! A WebM part's stored init is a live stream's (a Segment of unknown size, no duration): a
//! player given it as a file shows no length and cannot seek. The download replaces it with a
//! head made from the manifest ([`webm::download_head`]): known size, Duration, Cues.

use bytes::{BufMut, Bytes, BytesMut};

use crate::fmp4::{self, OpusConfig};
use crate::manifest::{Container, Part, object_key};
use crate::webm::{self, CueAt, Vp8Config};

/// A piece of the file: stored bytes (a whole object) or bytes made here.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Stored { key: String, len: u64 },
    Inline(Bytes),
}

impl Piece {
    pub fn len(&self) -> u64 {
        match self {
            Piece::Stored { len, .. } => *len,
            Piece::Inline(bytes) => bytes.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The pieces of `part`'s file, in order. `init` is the part's stored init segment when the
/// caller has read it: an MP4 init is then served with the part's length filled in
/// ([`fmp4::with_duration`]); without it, as stored.
pub fn pieces(session: &str, part: &Part, init: Option<&[u8]>) -> Vec<Piece> {
    let mut pieces = Vec::with_capacity(part.segments.len() + 2);
    let mp4_init = init
        .filter(|_| part.container == Container::Mp4)
        .and_then(|init| fmp4::with_duration(init, part_end_ms(part)));
    match (webm_head(part), mp4_init) {
        (Some(head), _) => pieces.push(Piece::Inline(head)),
        (None, Some(init)) => pieces.push(Piece::Inline(Bytes::from(init))),
        (None, None) => pieces.push(Piece::Stored {
            key: object_key(session, &part.init),
            len: part.init_bytes,
        }),
    }
    if part.container == Container::Mp4 && !part.segments.is_empty() {
        pieces.push(Piece::Inline(sidx(part)));
    }
    pieces.extend(part.segments.iter().map(|s| Piece::Stored {
        key: object_key(session, &s.name),
        len: s.bytes,
    }));
    pieces
}

/// The head of a WebM part's file, when the manifest holds what its tracks need (every part
/// the recorder writes does; otherwise the stored init is served as it is).
fn webm_head(part: &Part) -> Option<Bytes> {
    if part.container != Container::Webm {
        return None;
    }
    let video = match &part.video {
        Some(v) => Some(Vp8Config {
            width: v.width?,
            height: v.height?,
        }),
        None => None,
    };
    let audio = match &part.audio {
        Some(a) => Some(OpusConfig {
            channels: a.channels?,
        }),
        None => None,
    };
    let cues: Vec<CueAt> = part
        .segments
        .iter()
        .map(|s| CueAt {
            time_ms: s.start_ms,
            bytes: s.bytes,
        })
        .collect();
    Some(Bytes::from(webm::download_head(
        video.as_ref(),
        audio.as_ref(),
        part_end_ms(part),
        &cues,
    )))
}

/// Where the part's last segment ends on the recording's timeline.
fn part_end_ms(part: &Part) -> u64 {
    part.segments
        .last()
        .map_or(0, |s| s.start_ms + u64::from(s.duration_ms))
}

/// The segment index of an MP4 part: one `sidx` per track, one reference per media segment,
/// in the track's timescale. Every track needs its own: ffmpeg (and so Chromium, which plays files through it)
/// trusts the index, and the length it gives, only when each track has one.
fn sidx(part: &Part) -> Bytes {
    // At most 65535 references fit; at 4 s a segment that is 72 hours.
    let segments = &part.segments[..part.segments.len().min(usize::from(u16::MAX))];
    let size = 12 + 4 + 4 + 8 + 8 + 2 + 2 + 12 * segments.len();
    let tracks: Vec<(u32, u64)> = [
        part.video
            .as_ref()
            .map(|v| (fmp4::VIDEO_TRACK, u64::from(v.timescale))),
        part.audio
            .as_ref()
            .map(|a| (fmp4::AUDIO_TRACK, u64::from(a.timescale))),
    ]
    .into_iter()
    .flatten()
    .collect();
    // A manifest without track details (none the recorder writes): the first track, in ms.
    let tracks = if tracks.is_empty() {
        vec![(fmp4::VIDEO_TRACK, 1000)]
    } else {
        tracks
    };
    let mut b = BytesMut::with_capacity(size * tracks.len());
    for (i, &(track, timescale)) in tracks.iter().enumerate() {
        let ticks = |ms: u64| ms * timescale / 1000;
        b.put_u32(size as u32);
        b.put_slice(b"sidx");
        b.put_u32(1 << 24); // version 1 (64-bit times), no flags
        b.put_u32(track); // reference_ID
        b.put_u32(timescale as u32); // the track's, as its fragments count
        b.put_u64(ticks(segments.first().map_or(0, |s| s.start_ms))); // earliest_presentation_time
        // first_offset: the first segment follows the last index.
        b.put_u64((size * (tracks.len() - 1 - i)) as u64);
        b.put_u16(0); // reserved
        b.put_u16(segments.len() as u16);
        for s in segments {
            // reference_type 0 (media), referenced_size in 31 bits.
            b.put_u32((s.bytes.min(0x7fff_ffff)) as u32);
            b.put_u32(ticks(u64::from(s.duration_ms)) as u32);
            // starts_with_SAP = 1, SAP_type = 1 (a keyframe starts it), SAP_delta_time = 0.
            b.put_u32(0x9000_0000);
        }
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Segment, TrackInfo};

    #[test]
    fn the_index_sits_between_init_and_segments() {
        let part = Part {
            container: Container::Mp4,
            init: "p0-init.mp4".into(),
            init_bytes: 700,
            codecs: "avc1.42e01f,opus".into(),
            video: Some(TrackInfo {
                codec: "avc1.42e01f".into(),
                timescale: 90_000,
                width: Some(640),
                height: Some(360),
                channels: None,
            }),
            audio: Some(TrackInfo {
                codec: "opus".into(),
                timescale: 48_000,
                width: None,
                height: None,
                channels: Some(2),
            }),
            segments: (0..3)
                .map(|i| Segment {
                    seq: i,
                    name: format!("p0-{i:06}.m4s"),
                    start_ms: 4000 * i,
                    duration_ms: 4000,
                    bytes: 1000 + i,
                })
                .collect(),
        };
        let pieces = pieces("s", &part, None);
        assert_eq!(pieces.len(), 5);
        let Piece::Inline(sidx) = &pieces[1] else {
            panic!("{pieces:?}")
        };
        // One index per track, each of 76 bytes; the first points past the second.
        assert_eq!(sidx.len(), 2 * (12 + 28 + 36));
        for (at, track, first_offset) in [(0, 1, 76), (76, 2, 0)] {
            let index = &sidx[at..at + 76];
            assert_eq!(&index[4..8], b"sidx");
            assert_eq!(u32::from_be_bytes(index[0..4].try_into().unwrap()), 76);
            assert_eq!(u32::from_be_bytes(index[12..16].try_into().unwrap()), track);
            assert_eq!(
                u64::from_be_bytes(index[28..36].try_into().unwrap()),
                first_offset
            );
        }
        // The second reference: 1001 bytes, 4 s at 90 kHz, starts with a keyframe.
        let r = &sidx[40 + 12..40 + 24];
        assert_eq!(u32::from_be_bytes(r[0..4].try_into().unwrap()), 1001);
        assert_eq!(u32::from_be_bytes(r[4..8].try_into().unwrap()), 360_000);
        assert_eq!(r[8], 0x90);
        let total: u64 = pieces.iter().map(Piece::len).sum();
        assert_eq!(total, 700 + 152 + 1000 + 1001 + 1002);
    }
}
