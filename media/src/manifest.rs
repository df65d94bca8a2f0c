//! What a recording is made of, as the relay writes it and the server reads it.
//!
//! A recording is a list of *parts*; each part has one initialization
//! segment (`ftyp`+`moov`) and a run of media segments (`moof`+`mdat`, each
//! starting with a video keyframe), all fragmented MP4 (CMAF). A new part
//! starts only when the codecs change (a VP8 browser replaced by H.264 OBS).
//!
//! The manifest is rewritten after each segment is stored, so it only ever
//! names segments that exist: a crash loses the segment being filled, never
//! one that is listed.
//!
//! **Media time and hub time.** Media time runs only while someone publishes:
//! when the expert drops out for five minutes the recording does not hold
//! five minutes of nothing. Each stretch of publishing is a [`Span`], saying
//! which wall-clock instant (the hub's clock, Unix milliseconds) its first
//! media instant was. [`Manifest::media_ms_at`] is the one place that turns a
//! hub time (a question's `answering_at`) into a position in the recording.

use serde::{Deserialize, Serialize};

/// The manifest's own format version.
pub const MANIFEST_VERSION: u32 = 1;

/// Object keys of a session's recording.
pub fn recording_prefix(session: &str) -> String {
    format!("recordings/{session}")
}

pub fn manifest_key(session: &str) -> String {
    format!("recordings/{session}/manifest.json")
}

/// The key of a file named in the manifest (an init or media segment).
pub fn object_key(session: &str, name: &str) -> String {
    format!("recordings/{session}/{name}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The session id.
    pub session: String,
    /// Wall clock (Unix ms) when the first media arrived.
    pub started_at_ms: i64,
    /// Wall clock (Unix ms) when the session ended; `None` while it may go on.
    pub ended_at_ms: Option<i64>,
    /// The duration the segmenter aims at, in ms (segments are cut at the first keyframe after it).
    pub target_segment_ms: u32,
    pub parts: Vec<Part>,
    /// Stretches of publishing, in order; see the module documentation.
    pub spans: Vec<Span>,
}

/// The container of a part's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// Fragmented MP4 (CMAF): H.264 video, Opus audio. Playable by every
    /// browser and by HLS players.
    Mp4,
    /// WebM (Matroska): VP8 video, Opus audio. Browsers play VP8 only in
    /// WebM (Chromium 156 answers `""` to `video/mp4; codecs="vp08…"`), and
    /// HLS cannot carry WebM, so such parts have no HLS playlist.
    Webm,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Webm => "webm",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Container::Mp4 => "video/mp4",
            Container::Webm => "video/webm",
        }
    }
}

/// A run of segments sharing one initialization segment (one set of codecs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub container: Container,
    /// The init segment's file name (`p0-init.mp4`; for WebM the EBML
    /// header, an unknown-size Segment, Info and Tracks).
    pub init: String,
    pub init_bytes: u64,
    /// RFC 6381 codecs of the part, as in a MIME type: `avc1.42e01f,opus`.
    pub codecs: String,
    pub video: Option<TrackInfo>,
    pub audio: Option<TrackInfo>,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// RFC 6381 codec string: `avc1.42e01f`, `vp08.00.10.08`, `opus`.
    pub codec: String,
    /// The track's MP4 timescale (90000 for video, 48000 for Opus).
    pub timescale: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Counts up across the whole recording from 0 (the HLS media sequence).
    pub seq: u64,
    /// The file name (`p0-000001.m4s`).
    pub name: String,
    /// Media time of the segment's first sample, ms.
    pub start_ms: u64,
    pub duration_ms: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Media time (ms) at which this stretch of publishing starts.
    pub media_ms: u64,
    /// Wall clock (Unix ms) of that instant.
    pub wall_ms: i64,
}

impl Manifest {
    pub fn new(session: &str, started_at_ms: i64, target_segment_ms: u32) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            session: session.to_string(),
            started_at_ms,
            ended_at_ms: None,
            target_segment_ms,
            parts: Vec::new(),
            spans: Vec::new(),
        }
    }

    pub fn ended(&self) -> bool {
        self.ended_at_ms.is_some()
    }

    pub fn segments(&self) -> impl Iterator<Item = (&Part, &Segment)> {
        self.parts
            .iter()
            .flat_map(|part| part.segments.iter().map(move |s| (part, s)))
    }

    /// Media time covered by the stored segments, ms.
    pub fn duration_ms(&self) -> u64 {
        self.segments()
            .map(|(_, s)| s.start_ms + u64::from(s.duration_ms))
            .max()
            .unwrap_or(0)
    }

    /// Bytes of every stored file (init and media segments; not the manifest).
    pub fn bytes(&self) -> u64 {
        let inits: u64 = self.parts.iter().map(|p| p.init_bytes).sum();
        inits + self.segments().map(|(_, s)| s.bytes).sum::<u64>()
    }

    /// The position in the recording (media ms) of hub time `wall_ms`, or
    /// `None` before the recording started. A time when nobody published
    /// maps to where publishing resumed; a time after the last stored media
    /// maps to the end.
    pub fn media_ms_at(&self, wall_ms: i64) -> Option<u64> {
        let index = self.spans.partition_point(|span| span.wall_ms <= wall_ms);
        let span = self.spans.get(index.checked_sub(1)?)?;
        let elapsed = u64::try_from(wall_ms - span.wall_ms).unwrap_or(0);
        let mut at = span.media_ms.saturating_add(elapsed);
        if let Some(next) = self.spans.get(index) {
            at = at.min(next.media_ms);
        }
        Some(at.min(self.duration_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let mut m = Manifest::new("s", 1_000_000, 4000);
        m.parts.push(Part {
            container: Container::Mp4,
            init: "p0-init.mp4".into(),
            init_bytes: 50,
            codecs: "avc1.42e01f,opus".into(),
            video: None,
            audio: None,
            segments: (0..5)
                .map(|i| Segment {
                    seq: i,
                    name: format!("p0-{i:06}.m4s"),
                    start_ms: i * 4000,
                    duration_ms: 4000,
                    bytes: 100,
                })
                .collect(),
        });
        // Published 10 s, away 60 s, then 10 s more.
        m.spans = vec![
            Span {
                media_ms: 0,
                wall_ms: 1_000_000,
            },
            Span {
                media_ms: 10_000,
                wall_ms: 1_070_000,
            },
        ];
        m
    }

    #[test]
    fn hub_time_maps_into_spans() {
        let m = manifest();
        assert_eq!(m.media_ms_at(999_999), None);
        assert_eq!(m.media_ms_at(1_000_000), Some(0));
        assert_eq!(m.media_ms_at(1_004_500), Some(4500));
        // While nobody published: where publishing resumed.
        assert_eq!(m.media_ms_at(1_030_000), Some(10_000));
        assert_eq!(m.media_ms_at(1_072_000), Some(12_000));
        // Past the stored media: the end.
        assert_eq!(m.media_ms_at(2_000_000), Some(20_000));
        assert_eq!(m.duration_ms(), 20_000);
        assert_eq!(m.bytes(), 550);
    }

    #[test]
    fn round_trips_as_json() {
        let m = manifest();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
    }
}
