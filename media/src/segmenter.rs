//! Cuts a recording into parts and segments, sans I/O.
//!
//! The caller feeds access units ([`Frame`]: a track, a presentation time in
//! the track's timescale on the recording's one media timeline, a keyframe
//! flag, the bytes) and gets back [`Output`]s: a new part's init segment, or
//! a finished media segment. It stores each file whole and then lists it in
//! the manifest; the segmenter itself never touches storage or a clock.
//!
//! - A media segment starts at a video keyframe and is cut at the first
//!   keyframe after the target duration ([`Segmenter::wants_keyframe`] says
//!   when one is due, so the caller can ask the encoder for it).
//! - When no video has come for a target duration (a publisher without a
//!   camera, or a camera that stopped), segments are cut by time at audio
//!   frame boundaries; video then resumes at its next keyframe.
//! - Audio that comes before the first video keyframe of a recording is held
//!   (up to two target durations) and written at the start of the first video
//!   part: a browser's camera often sends its first keyframe seconds after
//!   its microphone's first packet, and what the expert says then is kept.
//!   If no keyframe comes within the hold, the audio starts an audio-only
//!   part.
//! - A new part (a new init segment) starts when what the init describes
//!   changes: the container or codec (VP8 → H.264), the H.264 profile or
//!   level, the H.264 picture size. A new SPS that changes none of these (or an
//!   SPS repeated before each IDR) stays in band, as the decoder expects. A VP8
//!   part carries a change of picture size (each VP8 keyframe states its own, as
//!   in the WebM files browsers' MediaRecorder writes): the recorder moves
//!   between a simulcast publisher's layers, and a part per move would cut a
//!   broadcast's first seconds into files of a second each.
//! - Every sample's duration is the distance to the next sample of its
//!   track, so each track holds back its newest frame until the next one
//!   arrives; [`Segmenter::flush`] closes the open segment (publisher gone)
//!   with the last durations seen.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::fmp4::{
    self, AUDIO_TIMESCALE, AvcConfig, OpusConfig, SampleInfo, TrackRun, VIDEO_TIMESCALE,
};
use crate::h264::{self, NAL_PPS, NAL_SPS};
use crate::manifest::{Container, Part, Segment, TrackInfo};
use crate::webm::{self, Block, Vp8Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Vp8,
}

impl VideoCodec {
    pub fn container(self) -> Container {
        match self {
            VideoCodec::H264 => Container::Mp4,
            VideoCodec::Vp8 => Container::Webm,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

impl Track {
    /// Ticks per second of the track's media time (MP4's timescales).
    pub fn timescale(self) -> u32 {
        match self {
            Track::Video => VIDEO_TIMESCALE,
            Track::Audio => AUDIO_TIMESCALE,
        }
    }
}

/// One access unit: H.264 in AVCC form (4-byte lengths, SPS/PPS in band
/// before IDRs), a VP8 frame, or an Opus packet.
#[derive(Debug, Clone)]
pub struct Frame {
    pub track: Track,
    /// Presentation time in the track's timescale, on the recording's timeline.
    pub pts: u64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// What the caller must store.
#[derive(Debug, Clone)]
pub enum Output {
    /// A part begins: store `init` under `part.init`, then list the part
    /// (its `segments` are empty).
    Part { part: Part, init: Bytes },
    /// A media segment of the last part: store it, then list it.
    Segment { segment: Segment, bytes: Bytes },
}

/// Where a recording continues (a fresh one: all zero).
#[derive(Debug, Clone, Copy, Default)]
pub struct Resume {
    pub next_part: u32,
    pub next_seq: u64,
    /// Media time already recorded, ms: new media starts no earlier.
    pub media_ms: u64,
}

/// What a part's init segment describes; a change means a new part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    H264(AvcConfig),
    Vp8(Vp8Config),
    AudioOnly,
}

impl Layout {
    fn container(&self) -> Container {
        match self {
            Layout::Vp8(_) => Container::Webm,
            _ => Container::Mp4,
        }
    }

    fn video_codec(&self) -> Option<String> {
        match self {
            Layout::H264(avc) => h264::parse_sps(&avc.sps).map(|s| s.codec_string()),
            Layout::Vp8(_) => Some("vp8".to_owned()),
            Layout::AudioOnly => None,
        }
    }

    /// Whether a part made for `self` can carry `new` without a new init.
    fn carries(&self, new: &Layout) -> bool {
        match (self, new) {
            (Layout::H264(a), Layout::H264(b)) => {
                a.width == b.width
                    && a.height == b.height
                    && self.video_codec() == new.video_codec()
            }
            (Layout::Vp8(_), Layout::Vp8(_)) => true,
            (a, b) => a == b,
        }
    }
}

const OPUS: OpusConfig = OpusConfig { channels: 2 };

struct OpenPart {
    index: u32,
    layout: Layout,
}

#[derive(Debug)]
struct Pending {
    pts: u64,
    keyframe: bool,
    data: Bytes,
}

#[derive(Default)]
struct TrackState {
    /// The newest frame, waiting for the next one to know its duration.
    pending: Option<Pending>,
    /// Finished samples of the open segment.
    samples: Vec<SampleInfo>,
    data: BytesMut,
    first_pts: Option<u64>,
    last_duration: Option<u32>,
    /// End of the last finished sample (pts + duration), ticks.
    end: u64,
}

impl TrackState {
    fn finish_pending(&mut self, next_pts: Option<u64>, default_duration: u32) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let duration = match next_pts {
            Some(next) => u32::try_from(next.saturating_sub(p.pts)).unwrap_or(u32::MAX),
            None => self.last_duration.unwrap_or(default_duration),
        }
        .max(1);
        self.last_duration = Some(duration);
        self.first_pts.get_or_insert(p.pts);
        self.samples.push(SampleInfo {
            duration,
            size: p.data.len() as u32,
            keyframe: p.keyframe,
        });
        self.data.extend_from_slice(&p.data);
        self.end = p.pts + u64::from(duration);
    }

    fn newest_pts(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.pts)
    }
}

/// See the module documentation.
pub struct Segmenter {
    target: Duration,
    span_video: Option<VideoCodec>,
    part: Option<OpenPart>,
    next_part: u32,
    next_seq: u64,
    floor_ms: u64,
    video: TrackState,
    audio: TrackState,
    /// Video is dropped until a keyframe (start, loss, a time cut).
    need_keyframe: bool,
    /// Audio before the first video part, oldest first (see the module docs).
    early_audio: Vec<Pending>,
}

/// Duration of a frame whose successor never came: 1/30 s, 20 ms.
const DEFAULT_VIDEO_DURATION: u32 = VIDEO_TIMESCALE / 30;
const DEFAULT_AUDIO_DURATION: u32 = AUDIO_TIMESCALE / 50;

fn ms(ticks: u64, timescale: u32) -> u64 {
    ticks * 1000 / u64::from(timescale)
}

impl Segmenter {
    pub fn new(target: Duration, resume: Resume) -> Segmenter {
        Segmenter {
            target,
            span_video: None,
            part: None,
            next_part: resume.next_part,
            next_seq: resume.next_seq,
            floor_ms: resume.media_ms,
            video: TrackState::default(),
            audio: TrackState::default(),
            need_keyframe: true,
            early_audio: Vec::new(),
        }
    }

    /// A new publisher (a span) begins with this video codec (`None`: audio
    /// only, or a codec that cannot be recorded). Closes the open segment.
    pub fn begin_span(&mut self, video: Option<VideoCodec>) -> Vec<Output> {
        let out = self.flush();
        self.span_video = video;
        out
    }

    /// Media time recorded so far (ms): where the next span starts.
    pub fn media_end_ms(&self) -> u64 {
        let video = ms(self.video.end, VIDEO_TIMESCALE);
        let audio = ms(self.audio.end, AUDIO_TIMESCALE);
        let pending = |t: &TrackState, track: Track, default: u32| {
            t.pending.as_ref().map_or(0, |p| {
                ms(
                    p.pts + u64::from(t.last_duration.unwrap_or(default)),
                    track.timescale(),
                )
            })
        };
        let early = self.early_audio.last().map_or(0, |p| {
            ms(p.pts + u64::from(DEFAULT_AUDIO_DURATION), AUDIO_TIMESCALE)
        });
        video
            .max(audio)
            .max(early)
            .max(self.floor_ms)
            .max(pending(&self.video, Track::Video, DEFAULT_VIDEO_DURATION))
            .max(pending(&self.audio, Track::Audio, DEFAULT_AUDIO_DURATION))
    }

    /// Whether the caller should ask the publisher for a keyframe: video is
    /// waiting for one, or the open segment is due.
    pub fn wants_keyframe(&self) -> bool {
        if self.span_video.is_none() {
            return false;
        }
        if self.need_keyframe {
            return true;
        }
        match (
            self.video.first_pts.or(self.video.newest_pts()),
            self.video.newest_pts(),
        ) {
            (Some(first), Some(newest)) => {
                Duration::from_secs_f64((newest - first) as f64 / f64::from(VIDEO_TIMESCALE))
                    >= self.target
            }
            _ => false,
        }
    }

    pub fn push(&mut self, frame: Frame) -> Vec<Output> {
        match frame.track {
            Track::Video => self.push_video(frame),
            Track::Audio => self.push_audio(frame),
        }
    }

    fn push_video(&mut self, frame: Frame) -> Vec<Output> {
        let Some(codec) = self.span_video else {
            return Vec::new();
        };
        if self.video.newest_pts().is_some_and(|p| frame.pts <= p) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut data = frame.data;
        if frame.keyframe {
            let Some(layout) = self.layout_of(codec, &data) else {
                return out;
            };
            let fits = self
                .part
                .as_ref()
                .is_some_and(|p| p.layout.carries(&layout));
            if !fits {
                out.extend(self.close_segment());
                out.push(self.start_part(layout));
                self.take_early_audio();
            } else if self.segment_due(frame.pts) {
                self.video
                    .finish_pending(Some(frame.pts), DEFAULT_VIDEO_DURATION);
                out.extend(self.emit());
            }
            self.need_keyframe = false;
            if let Some(OpenPart {
                layout: Layout::H264(avc),
                ..
            }) = &self.part
            {
                data = strip_parameter_sets(&data, avc);
            }
        } else if self.need_keyframe || self.part.is_none() {
            return out;
        }
        self.video
            .finish_pending(Some(frame.pts), DEFAULT_VIDEO_DURATION);
        self.video.pending = Some(Pending {
            pts: frame.pts,
            keyframe: frame.keyframe,
            data,
        });
        out
    }

    fn push_audio(&mut self, frame: Frame) -> Vec<Output> {
        let mut out = Vec::new();
        let newest = self
            .audio
            .newest_pts()
            .or(self.early_audio.last().map(|p| p.pts));
        if newest.is_some_and(|p| frame.pts <= p) {
            return out;
        }
        let audio_only = self.span_video.is_none();
        match &self.part {
            // A video part starts with its first keyframe; until then the
            // audio waits for it, for at most two target durations.
            None if !audio_only => {
                let held_since = self.early_audio.first().map_or(frame.pts, |p| p.pts);
                self.early_audio.push(Pending {
                    pts: frame.pts,
                    keyframe: true,
                    data: frame.data,
                });
                if frame.pts - held_since >= 2 * self.target_ticks(AUDIO_TIMESCALE) {
                    out.push(self.start_part(Layout::AudioOnly));
                    self.take_early_audio();
                }
                return out;
            }
            // No empty video track while only audio comes: players stall
            // on a track with a hole.
            Some(part) if audio_only && part.layout != Layout::AudioOnly => {
                out.extend(self.flush());
                out.push(self.start_part(Layout::AudioOnly));
            }
            None => out.push(self.start_part(Layout::AudioOnly)),
            Some(_) => {}
        }
        self.audio
            .finish_pending(Some(frame.pts), DEFAULT_AUDIO_DURATION);
        if self.time_cut_due(frame.pts) {
            // No video for a target duration: cut here, at an audio frame.
            self.video.finish_pending(None, DEFAULT_VIDEO_DURATION);
            out.extend(self.emit());
            if !audio_only {
                self.need_keyframe = true;
            }
        }
        self.audio.pending = Some(Pending {
            pts: frame.pts,
            keyframe: true,
            data: frame.data,
        });
        out
    }

    /// Moves the held audio into the part just started.
    fn take_early_audio(&mut self) {
        for early in std::mem::take(&mut self.early_audio) {
            self.audio
                .finish_pending(Some(early.pts), DEFAULT_AUDIO_DURATION);
            self.audio.pending = Some(early);
        }
    }

    /// Closes the open segment (the publisher left, or the session ends).
    pub fn flush(&mut self) -> Vec<Output> {
        if self.part.is_none() && !self.early_audio.is_empty() {
            // The video never came: what was said is kept, as audio only.
            let mut out = vec![self.start_part(Layout::AudioOnly)];
            self.take_early_audio();
            out.extend(self.close_segment());
            return out;
        }
        self.close_segment()
    }

    /// Closes the open segment, holding on to audio that waits for video.
    fn close_segment(&mut self) -> Vec<Output> {
        self.video.finish_pending(None, DEFAULT_VIDEO_DURATION);
        self.audio.finish_pending(None, DEFAULT_AUDIO_DURATION);
        self.need_keyframe = true;
        self.emit().into_iter().collect()
    }

    fn target_ticks(&self, timescale: u32) -> u64 {
        (self.target.as_secs_f64() * f64::from(timescale)) as u64
    }

    fn segment_due(&self, keyframe_pts: u64) -> bool {
        match self.video.first_pts.or(self.video.newest_pts()) {
            Some(first) => keyframe_pts.saturating_sub(first) >= self.target_ticks(VIDEO_TIMESCALE),
            None => false,
        }
    }

    fn time_cut_due(&self, audio_pts: u64) -> bool {
        let Some(first) = self.audio.first_pts else {
            return false;
        };
        let target = self.target_ticks(AUDIO_TIMESCALE);
        if audio_pts.saturating_sub(first) < target {
            return false;
        }
        // Time of the newest video frame, in audio ticks.
        let newest_video = self
            .video
            .newest_pts()
            .map(|p| p * u64::from(AUDIO_TIMESCALE) / u64::from(VIDEO_TIMESCALE));
        newest_video.is_none_or(|v| audio_pts.saturating_sub(v) >= target)
    }

    fn layout_of(&self, codec: VideoCodec, data: &[u8]) -> Option<Layout> {
        match codec {
            VideoCodec::Vp8 => {
                let (width, height) = webm::vp8_keyframe_size(data)?;
                Some(Layout::Vp8(Vp8Config { width, height }))
            }
            VideoCodec::H264 => {
                let mut sps = None;
                let mut pps = None;
                for nalu in h264::avcc_nalus(data) {
                    match h264::nal_type(nalu) {
                        NAL_SPS if sps.is_none() => sps = Some(nalu),
                        NAL_PPS if pps.is_none() => pps = Some(nalu),
                        _ => {}
                    }
                }
                match (sps, pps) {
                    (Some(sps), Some(pps)) => {
                        let info = h264::parse_sps(sps)?;
                        Some(Layout::H264(AvcConfig {
                            sps: sps.to_vec(),
                            pps: pps.to_vec(),
                            width: info.width,
                            height: info.height,
                        }))
                    }
                    // An IDR without parameter sets: the part's still hold.
                    _ => match &self.part {
                        Some(OpenPart {
                            layout: layout @ Layout::H264(_),
                            ..
                        }) => Some(layout.clone()),
                        _ => None,
                    },
                }
            }
        }
    }

    fn start_part(&mut self, layout: Layout) -> Output {
        let index = self.next_part;
        self.next_part += 1;
        let container = layout.container();
        let (init, video) = match &layout {
            Layout::H264(avc) => (
                fmp4::init_segment(Some(avc), Some(&OPUS)),
                Some(TrackInfo {
                    codec: layout.video_codec().unwrap_or_default(),
                    timescale: VIDEO_TIMESCALE,
                    width: Some(avc.width),
                    height: Some(avc.height),
                    channels: None,
                }),
            ),
            Layout::Vp8(vp8) => (
                webm::init_segment(Some(vp8), Some(&OPUS)),
                Some(TrackInfo {
                    codec: "vp8".to_owned(),
                    timescale: 1000,
                    width: Some(vp8.width),
                    height: Some(vp8.height),
                    channels: None,
                }),
            ),
            Layout::AudioOnly => (fmp4::init_segment(None, Some(&OPUS)), None),
        };
        let audio = TrackInfo {
            codec: "opus".to_owned(),
            timescale: if container == Container::Webm {
                1000
            } else {
                AUDIO_TIMESCALE
            },
            width: None,
            height: None,
            channels: Some(OPUS.channels),
        };
        let codecs = match &video {
            Some(v) => format!("{},opus", v.codec),
            None => "opus".to_owned(),
        };
        let part = Part {
            container,
            init: format!("p{index}-init.{}", container.extension()),
            init_bytes: init.len() as u64,
            codecs,
            video,
            audio: Some(audio),
            segments: Vec::new(),
        };
        self.part = Some(OpenPart { index, layout });
        Output::Part {
            part,
            init: Bytes::from(init),
        }
    }

    /// Writes the open segment's finished samples, if any.
    fn emit(&mut self) -> Option<Output> {
        let part = self.part.as_ref()?;
        if self.video.samples.is_empty() && self.audio.samples.is_empty() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let (start_ms, end_ms) = match self.video.first_pts {
            Some(first) if !self.video.samples.is_empty() => {
                let video_start = ms(first, VIDEO_TIMESCALE);
                // Audio held before the first keyframe starts the segment earlier.
                let start = match self.audio.first_pts {
                    Some(a) if !self.audio.samples.is_empty() => {
                        video_start.min(ms(a, AUDIO_TIMESCALE))
                    }
                    _ => video_start,
                };
                (start, ms(self.video.end, VIDEO_TIMESCALE))
            }
            _ => (
                ms(self.audio.first_pts.unwrap_or(0), AUDIO_TIMESCALE),
                ms(self.audio.end, AUDIO_TIMESCALE),
            ),
        };
        let bytes = match part.layout.container() {
            Container::Mp4 => {
                let mut runs = Vec::with_capacity(2);
                for (track, id) in [
                    (&self.video, fmp4::VIDEO_TRACK),
                    (&self.audio, fmp4::AUDIO_TRACK),
                ] {
                    if !track.samples.is_empty() {
                        runs.push(TrackRun {
                            track_id: id,
                            base_decode_time: track.first_pts.unwrap_or(0),
                            samples: &track.samples,
                            data: &track.data,
                        });
                    }
                }
                fmp4::media_segment(seq as u32 + 1, &runs)
            }
            Container::Webm => {
                let mut blocks =
                    Vec::with_capacity(self.video.samples.len() + self.audio.samples.len());
                for (track, id, timescale) in [
                    (&self.video, webm::VIDEO_TRACK, VIDEO_TIMESCALE),
                    (&self.audio, webm::AUDIO_TRACK, AUDIO_TIMESCALE),
                ] {
                    let mut pts = track.first_pts.unwrap_or(0);
                    let mut at = 0;
                    for s in &track.samples {
                        let len = s.size as usize;
                        blocks.push(Block {
                            track: id,
                            time_ms: ms(pts, timescale),
                            keyframe: s.keyframe,
                            data: &track.data[at..at + len],
                        });
                        at += len;
                        pts += u64::from(s.duration);
                    }
                }
                // Video first at equal times: a cluster opens with its keyframe.
                blocks.sort_by_key(|b| (b.time_ms, b.track));
                webm::clusters(&blocks)
            }
        };
        let name = format!(
            "p{}-{seq:06}.{}",
            part.index,
            match part.layout.container() {
                Container::Mp4 => "m4s",
                Container::Webm => "webm",
            }
        );
        for track in [&mut self.video, &mut self.audio] {
            track.samples.clear();
            track.data.clear();
            track.first_pts = None;
        }
        Some(Output::Segment {
            segment: Segment {
                seq,
                name,
                start_ms,
                duration_ms: u32::try_from(end_ms.saturating_sub(start_ms)).unwrap_or(u32::MAX),
                bytes: bytes.len() as u64,
            },
            bytes: Bytes::from(bytes),
        })
    }
}

/// The access unit without the SPS/PPS the init segment already holds;
/// different ones stay in band.
fn strip_parameter_sets(data: &Bytes, avc: &AvcConfig) -> Bytes {
    let redundant = |nalu: &[u8]| nalu == avc.sps.as_slice() || nalu == avc.pps.as_slice();
    if !h264::avcc_nalus(data).any(redundant) {
        return data.clone();
    }
    let mut out = BytesMut::with_capacity(data.len());
    for nalu in h264::avcc_nalus(data).filter(|n| !redundant(n)) {
        out.extend_from_slice(&(nalu.len() as u32).to_be_bytes());
        out.extend_from_slice(nalu);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    //! Real encoded streams (made by Debian's `ffmpeg`) through the segmenter,
    //! and the result read back by `ffprobe`.
    use std::path::Path;
    use std::process::Command;

    use super::*;

    fn ffmpeg(args: &[&str]) {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .status()
            .expect("ffmpeg (Debian package ffmpeg) must be installed");
        assert!(status.success(), "ffmpeg {args:?}");
    }

    /// H.264 access units (AVCC) of `seconds` at 30 fps, a keyframe every `gop` frames.
    fn h264_frames(dir: &Path, seconds: u32, gop: u32) -> Vec<(Bytes, bool)> {
        let path = dir.join("v.h264");
        let gop = gop.to_string();
        let duration = seconds.to_string();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-t",
            &duration,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-g",
            &gop,
            "-x264opts",
            "aud=1:repeat-headers=1",
            "-f",
            "h264",
            path.to_str().unwrap(),
        ]);
        let stream = std::fs::read(&path).unwrap();
        // Split Annex B on start codes, access units at each AUD.
        let mut nalus = Vec::new();
        let mut i = 0;
        let mut start = None;
        while i + 3 <= stream.len() {
            if stream[i..i + 3] == [0, 0, 1] {
                if let Some(s) = start {
                    let mut end = i;
                    while end > s && stream[end - 1] == 0 {
                        end -= 1;
                    }
                    nalus.push(&stream[s..end]);
                }
                i += 3;
                start = Some(i);
            } else {
                i += 1;
            }
        }
        nalus.push(&stream[start.unwrap()..]);
        let mut frames: Vec<(BytesMut, bool)> = Vec::new();
        for nalu in nalus {
            if h264::nal_type(nalu) == 9 {
                frames.push((BytesMut::new(), false));
                continue;
            }
            let (au, key) = frames.last_mut().unwrap();
            *key |= h264::nal_type(nalu) == h264::NAL_IDR;
            au.extend_from_slice(&(nalu.len() as u32).to_be_bytes());
            au.extend_from_slice(nalu);
        }
        frames
            .into_iter()
            .map(|(au, key)| (au.freeze(), key))
            .collect()
    }

    /// VP8 frames from an IVF file.
    fn vp8_frames(dir: &Path, seconds: u32, gop: u32) -> Vec<(Bytes, bool)> {
        vp8_frames_of(dir, "320x240", seconds, gop)
    }

    fn vp8_frames_of(dir: &Path, size: &str, seconds: u32, gop: u32) -> Vec<(Bytes, bool)> {
        let path = dir.join(format!("v-{size}.ivf"));
        let source = format!("testsrc=size={size}:rate=30");
        let gop = gop.to_string();
        let duration = seconds.to_string();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &source,
            "-t",
            &duration,
            "-c:v",
            "libvpx",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-b:v",
            "300k",
            path.to_str().unwrap(),
        ]);
        let ivf = std::fs::read(&path).unwrap();
        let mut at = 32;
        let mut frames = Vec::new();
        while at + 12 <= ivf.len() {
            let len = u32::from_le_bytes(ivf[at..at + 4].try_into().unwrap()) as usize;
            let frame = Bytes::copy_from_slice(&ivf[at + 12..at + 12 + len]);
            let key = webm::vp8_is_keyframe(&frame);
            frames.push((frame, key));
            at += 12 + len;
        }
        frames
    }

    /// A 20 ms stereo Opus silence frame (what encoders send in DTX).
    const OPUS_SILENCE: &[u8] = &[0xfc, 0xff, 0xfe];

    struct Stored {
        parts: Vec<(Part, Vec<u8>)>,
    }

    impl Stored {
        fn take(&mut self, outputs: Vec<Output>) {
            for output in outputs {
                match output {
                    Output::Part { part, init } => self.parts.push((part, init.to_vec())),
                    Output::Segment { segment, bytes } => {
                        let (part, file) = self.parts.last_mut().unwrap();
                        assert_eq!(segment.bytes, bytes.len() as u64);
                        part.segments.push(segment);
                        file.extend_from_slice(&bytes);
                    }
                }
            }
        }
    }

    /// Interleaves video at 30 fps and audio at 50 packets/s from `from_ms`.
    fn feed(
        seg: &mut Segmenter,
        stored: &mut Stored,
        video: &[(Bytes, bool)],
        from_ms: u64,
        with_audio: bool,
    ) {
        let seconds = video.len() as u64 / 30;
        let mut audio_n = 0;
        for (n, (data, key)) in video.iter().enumerate() {
            let at = from_ms * 90 + n as u64 * 3000;
            while with_audio
                && from_ms * 90 + audio_n * 960 * 90 / 48 <= at
                && audio_n < seconds * 50
            {
                stored.take(seg.push(Frame {
                    track: Track::Audio,
                    pts: from_ms * 48 + audio_n * 960,
                    keyframe: true,
                    data: Bytes::from_static(OPUS_SILENCE),
                }));
                audio_n += 1;
            }
            stored.take(seg.push(Frame {
                track: Track::Video,
                pts: at,
                keyframe: *key,
                data: data.clone(),
            }));
        }
    }

    struct Probe {
        streams: Vec<String>,
        /// (stream index, pts seconds) of every packet.
        packets: Vec<(usize, f64)>,
    }

    fn probe(path: &Path) -> Probe {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name:packet=stream_index,pts_time",
            ])
            .args(["-of", "csv=p=0"])
            .arg(path)
            .output()
            .expect("ffprobe");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut probe = Probe {
            streams: Vec::new(),
            packets: Vec::new(),
        };
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            match fields.as_slice() {
                [index, pts] if index.parse::<usize>().is_ok() => probe
                    .packets
                    .push((index.parse().unwrap(), pts.parse().unwrap())),
                [codec] => probe.streams.push(codec.to_string()),
                _ => {}
            }
        }
        probe
    }

    /// The length the file declares (ffprobe's `format.duration`).
    fn declared_duration(path: &Path) -> f64 {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    fn span_of(probe: &Probe, stream: usize) -> (f64, f64, f64) {
        let times: Vec<f64> = probe
            .packets
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, t)| *t)
            .collect();
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let gap = sorted.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        (sorted[0], sorted[sorted.len() - 1], gap)
    }

    fn write_part(dir: &Path, part: &(Part, Vec<u8>)) -> std::path::PathBuf {
        let path = dir.join(&part.0.init);
        std::fs::write(&path, &part.1).unwrap();
        path
    }

    #[test]
    fn h264_and_opus_make_fragmented_mp4_that_ffprobe_reads() {
        let dir = tempfile::tempdir().unwrap();
        let video = h264_frames(dir.path(), 10, 30);
        let mut seg = Segmenter::new(Duration::from_secs(4), Resume::default());
        let mut stored = Stored { parts: Vec::new() };
        stored.take(seg.begin_span(Some(VideoCodec::H264)));
        feed(&mut seg, &mut stored, &video, 0, true);
        stored.take(seg.flush());

        assert_eq!(stored.parts.len(), 1);
        let part = &stored.parts[0].0;
        assert_eq!(part.codecs, "avc1.42c00d,opus");
        assert_eq!(part.video.as_ref().unwrap().width, Some(320));
        let durations: Vec<u32> = part.segments.iter().map(|s| s.duration_ms).collect();
        assert_eq!(
            durations,
            [4000, 4000, 2000],
            "cut at the first keyframe after 4 s"
        );
        assert_eq!(part.segments[1].start_ms, 4000);
        assert_eq!(seg.media_end_ms(), 10_000);

        let path = write_part(dir.path(), &stored.parts[0]);
        let probe = probe(&path);
        assert_eq!(probe.streams, ["h264", "opus"]);
        let (first, last, gap) = span_of(&probe, 0);
        assert!(
            first.abs() < 0.001 && (last - 9.967).abs() < 0.01,
            "{first} {last}"
        );
        assert!(gap < 0.04, "video gap {gap}");
        let (first, last, gap) = span_of(&probe, 1);
        assert!(first < 0.021 && last > 9.9, "{first} {last}");
        assert!(gap < 0.03, "audio gap {gap}");
        // Every frame decodes.
        ffmpeg(&["-i", path.to_str().unwrap(), "-f", "null", "-"]);

        // The download: the init with the length filled in, the index, the segments; ffprobe
        // takes the declared length, not the first fragment's.
        let (part, file) = &stored.parts[0];
        let init = &file[..part.init_bytes as usize];
        let pieces = crate::download::pieces("s", part, Some(init));
        let mut whole = Vec::new();
        for piece in &pieces[..2] {
            let crate::download::Piece::Inline(bytes) = piece else {
                panic!("{pieces:?}")
            };
            whole.extend_from_slice(bytes);
        }
        whole.extend_from_slice(&file[part.init_bytes as usize..]);
        let download = dir.path().join("download.mp4");
        std::fs::write(&download, &whole).unwrap();
        let declared = declared_duration(&download);
        assert!((declared - 10.0).abs() < 0.1, "declared {declared}");
        ffmpeg(&[
            "-ss",
            "6",
            "-i",
            download.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ]);
    }

    #[test]
    fn vp8_and_opus_make_webm_and_a_new_span_continues_the_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let video = vp8_frames(dir.path(), 6, 60);
        let mut seg = Segmenter::new(Duration::from_secs(4), Resume::default());
        let mut stored = Stored { parts: Vec::new() };
        stored.take(seg.begin_span(Some(VideoCodec::Vp8)));
        feed(&mut seg, &mut stored, &video, 0, true);
        // A second publisher: media time continues where the first stopped.
        stored.take(seg.begin_span(Some(VideoCodec::Vp8)));
        let resume = seg.media_end_ms();
        assert_eq!(resume, 6000);
        feed(&mut seg, &mut stored, &video, resume, true);
        stored.take(seg.flush());

        assert_eq!(stored.parts.len(), 1, "same codec and size: one part");
        let part = &stored.parts[0].0;
        assert_eq!(part.container, Container::Webm);
        assert_eq!(part.codecs, "vp8,opus");
        let starts: Vec<u64> = part.segments.iter().map(|s| s.start_ms).collect();
        assert_eq!(starts, [0, 4000, 6000, 10_000]);
        let path = write_part(dir.path(), &stored.parts[0]);
        let probe = probe(&path);
        assert_eq!(probe.streams, ["vp8", "opus"]);
        let (first, last, gap) = span_of(&probe, 0);
        assert!(
            first.abs() < 0.001 && (last - 11.967).abs() < 0.01,
            "{first} {last}"
        );
        assert!(gap < 0.04, "video gap {gap}");
        ffmpeg(&["-i", path.to_str().unwrap(), "-f", "null", "-"]);

        // The download's head: a known length and a cue at each segment's first cluster.
        let (part, file) = &stored.parts[0];
        let Some(crate::download::Piece::Inline(head)) =
            crate::download::pieces("s", part, None).first().cloned()
        else {
            panic!("a WebM download starts with a head made here")
        };
        let mut whole = head.to_vec();
        whole.extend_from_slice(&file[part.init_bytes as usize..]);
        let download = dir.path().join("download.webm");
        std::fs::write(&download, &whole).unwrap();
        let duration = declared_duration(&download);
        assert!((duration - 12.0).abs() < 0.1, "duration {duration}");
        let data_start = head
            .windows(4)
            .position(|w| w == [0x18, 0x53, 0x80, 0x67])
            .unwrap()
            + 12;
        let positions: Vec<usize> = head
            .windows(2)
            .enumerate()
            .filter(|(_, w)| *w == [0xF1, 0x88])
            .map(|(i, _)| {
                let n = u64::from_be_bytes(head[i + 2..i + 10].try_into().unwrap());
                data_start + n as usize
            })
            .collect();
        assert_eq!(positions.len(), part.segments.len());
        for at in positions {
            assert_eq!(
                whole[at..at + 4],
                [0x1F, 0x43, 0xB6, 0x75],
                "a cluster at {at}"
            );
        }
        ffmpeg(&["-i", download.to_str().unwrap(), "-f", "null", "-"]);
        ffmpeg(&[
            "-ss",
            "7",
            "-i",
            download.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ]);
    }

    #[test]
    fn a_vp8_part_carries_a_change_of_picture_size() {
        let dir = tempfile::tempdir().unwrap();
        let small = vp8_frames_of(dir.path(), "320x240", 2, 30);
        let large = vp8_frames_of(dir.path(), "640x480", 4, 60);
        let mut seg = Segmenter::new(Duration::from_secs(2), Resume::default());
        let mut stored = Stored { parts: Vec::new() };
        stored.take(seg.begin_span(Some(VideoCodec::Vp8)));
        feed(&mut seg, &mut stored, &small, 0, true);
        feed(&mut seg, &mut stored, &large, 2000, true);
        stored.take(seg.flush());

        assert_eq!(stored.parts.len(), 1, "one part across the size change");
        let path = write_part(dir.path(), &stored.parts[0]);
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["frame=width,height", "-of", "csv=p=0"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sizes: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(sizes.len(), 180, "every frame decoded");
        assert!(
            sizes[..60].iter().all(|s| s == "320,240"),
            "{:?}",
            &sizes[..60]
        );
        assert!(
            sizes[60..].iter().all(|s| s == "640,480"),
            "{:?}",
            &sizes[60..]
        );
        let (first, last, gap) = span_of(&probe(&path), 0);
        assert!(
            first.abs() < 0.001 && (last - 5.967).abs() < 0.01,
            "{first} {last}"
        );
        assert!(gap < 0.04, "video gap {gap}");
    }

    #[test]
    fn a_codec_change_starts_a_new_part_and_audio_only_is_cut_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let vp8 = vp8_frames(dir.path(), 2, 30);
        let h264 = h264_frames(dir.path(), 2, 30);
        let mut seg = Segmenter::new(
            Duration::from_secs(1),
            Resume {
                next_part: 3,
                next_seq: 10,
                media_ms: 5000,
            },
        );
        let mut stored = Stored { parts: Vec::new() };
        stored.take(seg.begin_span(Some(VideoCodec::Vp8)));
        feed(&mut seg, &mut stored, &vp8, 5000, true);
        stored.take(seg.begin_span(Some(VideoCodec::H264)));
        let from = seg.media_end_ms();
        feed(&mut seg, &mut stored, &h264, from, true);
        stored.take(seg.begin_span(None));
        let from = seg.media_end_ms();
        for n in 0..150u64 {
            stored.take(seg.push(Frame {
                track: Track::Audio,
                pts: from * 48 + n * 960,
                keyframe: true,
                data: Bytes::from_static(OPUS_SILENCE),
            }));
        }
        stored.take(seg.flush());
        let names: Vec<&str> = stored.parts.iter().map(|p| p.0.init.as_str()).collect();
        assert_eq!(names, ["p3-init.webm", "p4-init.mp4", "p5-init.mp4"]);
        assert_eq!(stored.parts[0].0.segments[0].name, "p3-000010.webm");
        assert_eq!(stored.parts[2].0.codecs, "opus");
        let audio_only: Vec<u32> = stored.parts[2]
            .0
            .segments
            .iter()
            .map(|s| s.duration_ms)
            .collect();
        assert_eq!(audio_only, [1000, 1000, 1000]);
        let seqs: Vec<u64> = stored
            .parts
            .iter()
            .flat_map(|p| p.0.segments.iter().map(|s| s.seq))
            .collect();
        assert_eq!(seqs, (10..10 + seqs.len() as u64).collect::<Vec<_>>());
        for part in &stored.parts {
            let path = write_part(dir.path(), part);
            let probe = probe(&path);
            assert!(!probe.packets.is_empty(), "{}", part.0.init);
        }
        assert_eq!(seg.media_end_ms(), 12_000);
    }

    /// The part's file as `GET …/recording.mp4?part=N` serves it.
    fn download_file(part: &(Part, Vec<u8>)) -> Vec<u8> {
        let init = &part.1[..part.0.init_bytes as usize];
        let mut media = &part.1[part.0.init_bytes as usize..];
        let mut out = Vec::new();
        for piece in crate::download::pieces("s", &part.0, Some(init)) {
            match piece {
                crate::download::Piece::Inline(bytes) => out.extend_from_slice(&bytes),
                crate::download::Piece::Stored { key, len } => {
                    if key.ends_with(&part.0.init) {
                        out.extend_from_slice(init);
                    } else {
                        out.extend_from_slice(&media[..len as usize]);
                        media = &media[len as usize..];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_part_s_file_keeps_the_recording_s_timeline_and_declares_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let vp8 = vp8_frames(dir.path(), 6, 30);
        let h264 = h264_frames(dir.path(), 6, 30);
        let mut seg = Segmenter::new(Duration::from_secs(2), Resume::default());
        let mut stored = Stored { parts: Vec::new() };
        // H.264, then a VP8 browser, then H.264 again: three parts of 6 s.
        for (codec, video) in [
            (VideoCodec::H264, &h264),
            (VideoCodec::Vp8, &vp8),
            (VideoCodec::H264, &h264),
        ] {
            stored.take(seg.begin_span(Some(codec)));
            let from = seg.media_end_ms();
            feed(&mut seg, &mut stored, video, from, true);
        }
        stored.take(seg.flush());
        assert_eq!(stored.parts.len(), 3);
        for (i, part) in stored.parts.iter().enumerate() {
            let start = part.0.segments[0].start_ms as f64 / 1000.0;
            assert!(
                (start - 6.0 * i as f64).abs() < 0.05,
                "part {i} starts at {start}"
            );
            let path = dir
                .path()
                .join(format!("part{i}.{}", part.0.container.extension()));
            std::fs::write(&path, download_file(part)).unwrap();
            let probe = probe(&path);
            let (first, last, gap) = span_of(&probe, 0);
            assert!(
                (first - start).abs() < 0.05,
                "part {i}: first frame at {first}"
            );
            assert!(last > start + 5.9 && gap < 0.05, "part {i}: {last} {gap}");
            let declared = declared_duration(&path);
            assert!(
                (declared - (start + 6.0)).abs() < 0.1,
                "part {i} declares {declared} s"
            );
        }
    }

    fn push_silence(seg: &mut Segmenter, stored: &mut Stored, from_ms: u64, to_ms: u64) {
        let mut pts = from_ms * 48;
        while pts < to_ms * 48 {
            stored.take(seg.push(Frame {
                track: Track::Audio,
                pts,
                keyframe: true,
                data: Bytes::from_static(OPUS_SILENCE),
            }));
            pts += 960;
        }
    }

    #[test]
    fn audio_before_the_first_keyframe_is_kept_at_the_start_of_the_first_part() {
        let dir = tempfile::tempdir().unwrap();
        let video = h264_frames(dir.path(), 6, 60);
        let mut seg = Segmenter::new(Duration::from_secs(4), Resume::default());
        let mut stored = Stored { parts: Vec::new() };
        stored.take(seg.begin_span(Some(VideoCodec::H264)));
        // The microphone's first 3.5 s come before the camera's first keyframe.
        push_silence(&mut seg, &mut stored, 0, 3500);
        assert!(stored.parts.is_empty(), "no part before the keyframe");
        assert_eq!(seg.media_end_ms(), 3500);
        feed(&mut seg, &mut stored, &video, 3500, true);
        stored.take(seg.flush());

        assert_eq!(stored.parts.len(), 1, "one part: the video one");
        let part = &stored.parts[0].0;
        assert!(part.codecs.starts_with("avc1."), "{}", part.codecs);
        assert_eq!(
            part.segments[0].start_ms, 0,
            "the first segment starts with the audio"
        );
        let end = part
            .segments
            .last()
            .map(|s| s.start_ms + u64::from(s.duration_ms));
        assert!(end.is_some_and(|e| (9_400..=9_600).contains(&e)), "{end:?}");
        let path = write_part(dir.path(), &stored.parts[0]);
        let probe = probe(&path);
        assert_eq!(probe.streams, ["h264", "opus"]);
        let (v_first, _, v_gap) = span_of(&probe, 0);
        let (a_first, a_last, a_gap) = span_of(&probe, 1);
        assert!(a_first < 0.05, "audio starts at {a_first}");
        assert!((v_first - 3.5).abs() < 0.05, "video starts at {v_first}");
        assert!(a_last > 9.3, "audio ends at {a_last}");
        assert!(a_gap < 0.05 && v_gap < 0.05, "gaps {a_gap} {v_gap}");
    }

    #[test]
    fn audio_waits_two_target_durations_for_video_then_starts_an_audio_part() {
        let dir = tempfile::tempdir().unwrap();
        let video = h264_frames(dir.path(), 4, 60);
        let mut seg = Segmenter::new(Duration::from_secs(2), Resume::default());
        let mut stored = Stored { parts: Vec::new() };
        stored.take(seg.begin_span(Some(VideoCodec::H264)));
        push_silence(&mut seg, &mut stored, 0, 3900);
        assert!(stored.parts.is_empty(), "still waiting for the camera");
        push_silence(&mut seg, &mut stored, 3900, 6000);
        assert_eq!(
            stored.parts.len(),
            1,
            "after 4 s the audio has a part of its own"
        );
        assert_eq!(stored.parts[0].0.codecs, "opus");
        feed(&mut seg, &mut stored, &video, 6000, true);
        stored.take(seg.flush());
        assert_eq!(stored.parts.len(), 2);
        assert!(stored.parts[1].0.codecs.starts_with("avc1."));
        let first = &stored.parts[0].0.segments;
        assert_eq!(first[0].start_ms, 0);
        let audio_end = first.last().map(|s| s.start_ms + u64::from(s.duration_ms));
        assert!(audio_end.is_some_and(|e| e >= 5_900), "{audio_end:?}");
        let (a_first, _, a_gap) = span_of(&probe(&write_part(dir.path(), &stored.parts[0])), 0);
        assert!(a_first < 0.05 && a_gap < 0.05, "{a_first} {a_gap}");
    }

    #[test]
    fn audio_held_for_a_camera_that_never_sends_is_kept_when_the_publisher_leaves() {
        let mut seg = Segmenter::new(Duration::from_secs(4), Resume::default());
        let mut stored = Stored { parts: Vec::new() };
        stored.take(seg.begin_span(Some(VideoCodec::Vp8)));
        push_silence(&mut seg, &mut stored, 0, 2000);
        stored.take(seg.flush());
        assert_eq!(stored.parts.len(), 1);
        assert_eq!(stored.parts[0].0.codecs, "opus");
        let segments = &stored.parts[0].0.segments;
        assert_eq!(segments.len(), 1);
        assert_eq!((segments[0].start_ms, segments[0].duration_ms), (0, 2000));
    }

    #[test]
    fn delta_frames_before_the_first_keyframe_are_dropped_and_a_keyframe_is_wanted() {
        let mut seg = Segmenter::new(Duration::from_secs(4), Resume::default());
        let out = seg.begin_span(Some(VideoCodec::Vp8));
        assert!(out.is_empty());
        assert!(seg.wants_keyframe());
        let out = seg.push(Frame {
            track: Track::Video,
            pts: 0,
            keyframe: false,
            data: Bytes::from_static(&[1, 2, 3]),
        });
        assert!(out.is_empty() && seg.wants_keyframe());
    }
}
