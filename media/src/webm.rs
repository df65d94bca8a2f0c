//! A WebM writer for what the relay records: VP8 video (track 1) and Opus
//! audio (track 2), millisecond timestamps.
//!
//! The init segment is the EBML header, a `Segment` of unknown size (so
//! clusters can be appended for as long as the broadcast lasts), `Info` and
//! `Tracks`. Each media segment is one or more `Cluster`s of `SimpleBlock`s,
//! written with their size known (a cluster is written whole). This is the
//! WebM byte stream format of Media Source Extensions, and the concatenation
//! of init + segments is a WebM file `ffmpeg` and browsers read.

use crate::fmp4::{OPUS_PRE_SKIP, OpusConfig};

pub const VIDEO_TRACK: u64 = 1;
pub const AUDIO_TRACK: u64 = 2;

/// A SimpleBlock's timestamp is a signed 16-bit offset from its cluster's.
const MAX_CLUSTER_SPAN_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Config {
    pub width: u16,
    pub height: u16,
}

/// A frame to put in a cluster.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    pub track: u64,
    pub time_ms: u64,
    pub keyframe: bool,
    pub data: &'a [u8],
}

fn id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// An element size as an 8-byte vint (simple, and patchable in place).
fn size8(out: &mut Vec<u8>, size: u64) {
    out.push(0x01);
    out.extend_from_slice(&size.to_be_bytes()[1..]);
}

fn element(out: &mut Vec<u8>, element_id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    id(out, element_id);
    let at = out.len();
    size8(out, 0);
    let start = out.len();
    body(out);
    let size = (out.len() - start) as u64;
    let mut patched = Vec::with_capacity(8);
    size8(&mut patched, size);
    out[at..at + 8].copy_from_slice(&patched);
}

fn uint(out: &mut Vec<u8>, element_id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    id(out, element_id);
    out.push(0x80 | (8 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

fn float(out: &mut Vec<u8>, element_id: u32, v: f64) {
    id(out, element_id);
    out.push(0x88);
    out.extend_from_slice(&v.to_be_bytes());
}

fn binary(out: &mut Vec<u8>, element_id: u32, v: &[u8]) {
    id(out, element_id);
    size8(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// The Opus identification header (RFC 7845 §5.1), WebM's `CodecPrivate`.
pub fn opus_head(opus: &OpusConfig) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(opus.channels);
    head.extend_from_slice(&OPUS_PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0u16.to_le_bytes());
    head.push(0);
    head
}

/// EBML header, unknown-size Segment, Info and Tracks.
pub fn init_segment(video: Option<&Vp8Config>, audio: Option<&OpusConfig>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    ebml_header(&mut out);
    id(&mut out, SEGMENT); // size unknown
    out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    info(&mut out, None);
    tracks(&mut out, video, audio);
    out
}

/// Where a media segment of a part starts, for [`download_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CueAt {
    pub time_ms: u64,
    pub bytes: u64,
}

/// The head of one WebM file made of a part's media segments: what a progressive player needs
/// to show the length and to seek without reading every cluster before the target. Unlike the
/// stored init (a live stream's: unknown size, no duration), the Segment's size is known, Info
/// has the Duration, and Cues give each segment's first cluster (which starts with a
/// keyframe). `segments` follow the head unchanged, in order.
pub fn download_head(
    video: Option<&Vp8Config>,
    audio: Option<&OpusConfig>,
    duration_ms: u64,
    segments: &[CueAt],
) -> Vec<u8> {
    let mut meta = Vec::with_capacity(512 + 40 * segments.len());
    info(&mut meta, Some(duration_ms));
    tracks(&mut meta, video, audio);
    let track = if video.is_some() {
        VIDEO_TRACK
    } else {
        AUDIO_TRACK
    };
    // Positions count from the Segment's data and point past the Cues themselves; with
    // fixed-width numbers the Cues' length does not depend on them, so one dry run gives it.
    let cues_len = cues(&mut Vec::new(), track, segments, 0).len() as u64;
    let mut cue_bytes = Vec::new();
    cues(
        &mut cue_bytes,
        track,
        segments,
        meta.len() as u64 + cues_len,
    );
    meta.extend_from_slice(&cue_bytes);
    let media: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut out = Vec::with_capacity(meta.len() + 64);
    ebml_header(&mut out);
    id(&mut out, SEGMENT);
    size8(&mut out, meta.len() as u64 + media);
    out.extend_from_slice(&meta);
    out
}

const SEGMENT: u32 = 0x1853_8067;

fn ebml_header(out: &mut Vec<u8>) {
    element(out, 0x1A45_DFA3, |e| {
        uint(e, 0x4286, 1); // EBMLVersion
        uint(e, 0x42F7, 1); // EBMLReadVersion
        uint(e, 0x42F2, 4); // EBMLMaxIDLength
        uint(e, 0x42F3, 8); // EBMLMaxSizeLength
        binary(e, 0x4282, b"webm"); // DocType
        uint(e, 0x4287, 4); // DocTypeVersion
        uint(e, 0x4285, 2); // DocTypeReadVersion
    });
}

fn info(out: &mut Vec<u8>, duration_ms: Option<u64>) {
    element(out, 0x1549_A966, |e| {
        uint(e, 0x2A_D7B1, 1_000_000); // TimestampScale: 1 ms
        if let Some(ms) = duration_ms {
            float(e, 0x4489, ms as f64); // Duration, in TimestampScale units
        }
        binary(e, 0x4D80, b"oncolive"); // MuxingApp
        binary(e, 0x5741, b"oncolive"); // WritingApp
    });
}

fn tracks(out: &mut Vec<u8>, video: Option<&Vp8Config>, audio: Option<&OpusConfig>) {
    element(out, 0x1654_AE6B, |tracks| {
        if let Some(vp8) = video {
            element(tracks, 0xAE, |t| {
                uint(t, 0xD7, VIDEO_TRACK); // TrackNumber
                uint(t, 0x73C5, VIDEO_TRACK); // TrackUID
                uint(t, 0x83, 1); // TrackType: video
                uint(t, 0x9C, 0); // FlagLacing
                binary(t, 0x86, b"V_VP8");
                element(t, 0xE0, |v| {
                    uint(v, 0xB0, u64::from(vp8.width));
                    uint(v, 0xBA, u64::from(vp8.height));
                });
            });
        }
        if let Some(opus) = audio {
            element(tracks, 0xAE, |t| {
                uint(t, 0xD7, AUDIO_TRACK);
                uint(t, 0x73C5, AUDIO_TRACK);
                uint(t, 0x83, 2); // TrackType: audio
                uint(t, 0x9C, 0);
                binary(t, 0x86, b"A_OPUS");
                binary(t, 0x63A2, &opus_head(opus)); // CodecPrivate
                // CodecDelay (ns): the pre-skip; SeekPreRoll: 80 ms, as RFC 7845 advises.
                uint(t, 0x56AA, u64::from(OPUS_PRE_SKIP) * 1_000_000_000 / 48_000);
                uint(t, 0x56BB, 80_000_000);
                element(t, 0xE1, |a| {
                    float(a, 0xB5, 48_000.0);
                    uint(a, 0x9F, u64::from(opus.channels));
                });
            });
        }
    });
}

/// Cues with one CuePoint per segment; `first` is where the first segment starts, from the
/// Segment's data. Numbers are 8 bytes wide whatever their value.
fn cues<'a>(out: &'a mut Vec<u8>, track: u64, segments: &[CueAt], first: u64) -> &'a [u8] {
    let wide = |out: &mut Vec<u8>, element_id: u32, v: u64| {
        id(out, element_id);
        out.push(0x88);
        out.extend_from_slice(&v.to_be_bytes());
    };
    element(out, 0x1C53_BB6B, |c| {
        let mut at = first;
        for s in segments {
            element(c, 0xBB, |p| {
                wide(p, 0xB3, s.time_ms); // CueTime
                element(p, 0xB7, |t| {
                    uint(t, 0xF7, track); // CueTrack
                    wide(t, 0xF1, at); // CueClusterPosition
                });
            });
            at += s.bytes;
        }
    });
    out
}

/// Clusters holding `blocks` (in time order): a new cluster whenever the
/// offset from the cluster's timestamp would pass 30 s.
pub fn clusters(blocks: &[Block]) -> Vec<u8> {
    let len: usize = blocks.iter().map(|b| b.data.len() + 16).sum();
    let mut out = Vec::with_capacity(len + 32);
    let mut rest = blocks;
    while let Some(first) = rest.first() {
        let base = first.time_ms;
        let n = rest
            .iter()
            .position(|b| b.time_ms.saturating_sub(base) > MAX_CLUSTER_SPAN_MS)
            .unwrap_or(rest.len());
        element(&mut out, 0x1F43_B675, |c| {
            uint(c, 0xE7, base); // Timestamp
            for block in &rest[..n] {
                id(c, 0xA3); // SimpleBlock
                size8(c, block.data.len() as u64 + 4);
                c.push(0x80 | block.track as u8);
                let offset = block.time_ms.saturating_sub(base) as i16;
                c.extend_from_slice(&offset.to_be_bytes());
                c.push(if block.keyframe { 0x80 } else { 0 });
                c.extend_from_slice(block.data);
            }
        });
        rest = &rest[n..];
    }
    out
}

/// The picture size from a VP8 key frame's header (RFC 6386 §9.1), or
/// `None` for an interframe.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// Whether a VP8 frame is a key frame (the inverse key frame bit is 0).
pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}
