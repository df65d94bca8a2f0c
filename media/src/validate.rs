//! Whether an uploaded file may enter the library, decided from the container itself, never
//! from its name: an MP4 (ISO BMFF) with exactly one H.264 video track and at most one AAC
//! or Opus audio track, at most [`MAX_DURATION_MS`] long and [`MAX_BYTES`] big, and whole
//! (its `moov` is there and every sample lies inside the file).
//!
//! The boxes inside `moov` are read by Mozilla's `mp4parse`, the parser Firefox runs on
//! whatever the web sends it. Around it this module does what `mp4parse` leaves to its
//! caller: the top-level walk (which tells a cut-off file from a foreign one), the byte
//! extents of the samples, and the duration from the sample tables rather than from the
//! headers, which a file may state falsely.
//!
//! Pure and synchronous: it reads from any `Read + Seek` (the server hands it a temporary
//! file) and keeps at most the `ftyp` and `moov` boxes in memory.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use mp4parse::{
    AudioCodecSpecific, CodecType, SampleEntry, TrackType, VideoCodecSpecific, read_mp4,
};
use serde::{Deserialize, Serialize};

/// The hospitals' "at most 100 MB", read as 100 MiB (104,857,600 bytes): what Windows
/// Explorer and most phones call 100 MB. A file that passes the rule by either reading
/// (10^8 or 2^20 × 100 bytes) passes here.
pub const MAX_BYTES: u64 = 100 * 1024 * 1024;
/// The hospitals' "at most 10 minutes".
pub const MAX_DURATION_MS: u64 = 10 * 60 * 1000;
/// The largest `moov` read: a 10-minute file's is about 1 MB; anything far larger is hostile.
const MAX_MOOV_BYTES: u64 = 32 * 1024 * 1024;

/// What the library lists about an accepted video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// The longest track, from its sample table.
    pub duration_ms: u64,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codec of the video track: `avc1.PPCCLL` (profile, constraints, level in hex).
    pub video_codec: String,
    /// `mp4a.40.2` (AAC-LC; the object type from the file), `opus`, or `None` without audio.
    pub audio_codec: Option<String>,
    /// The file's size in bytes.
    pub bytes: u64,
}

impl VideoInfo {
    /// The `codecs` parameter of the MIME type: `avc1.42c01e,mp4a.40.2`.
    pub fn codecs(&self) -> String {
        match &self.audio_codec {
            Some(audio) => format!("{},{audio}", self.video_codec),
            None => self.video_codec.clone(),
        }
    }
}

/// Why a file was refused. [`Refusal::code`] is stable (clients switch on it); the message
/// (`Display`) is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the file is not an MP4 (no ftyp box at its start); export it as MP4 (H.264)")]
    NotMp4,
    #[error("the file is {bytes} bytes; at most {MAX_BYTES} (100 MB) are accepted")]
    TooLarge { bytes: u64 },
    #[error("the file is incomplete ({0}); upload it again, or export it again")]
    Truncated(String),
    #[error(
        "fragmented MP4 is not accepted; remux it with `ffmpeg -i in.mp4 -c copy -movflags +faststart out.mp4`"
    )]
    Fragmented,
    #[error("the MP4 cannot be read: {0}")]
    Malformed(String),
    #[error("the file has no video track")]
    NoVideo,
    #[error("the file has {0} video tracks; exactly one is accepted")]
    TooManyVideoTracks(usize),
    #[error("the video is {0}; only H.264 (AVC) is accepted")]
    UnsupportedVideoCodec(String),
    #[error("the file has {0} audio tracks; at most one is accepted")]
    TooManyAudioTracks(usize),
    #[error("the audio is {0}; only AAC or Opus is accepted")]
    UnsupportedAudioCodec(String),
    #[error("the video lasts {}; at most 10 minutes are accepted", minutes(*duration_ms))]
    TooLong { duration_ms: u64 },
}

fn minutes(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

impl Refusal {
    /// The stable snake_case code of the reason (listed in docs/protocol.md).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotMp4 => "not_mp4",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::Truncated(_) => "truncated",
            Refusal::Fragmented => "fragmented",
            Refusal::Malformed(_) => "malformed",
            Refusal::NoVideo => "no_video",
            Refusal::TooManyVideoTracks(_) => "too_many_video_tracks",
            Refusal::UnsupportedVideoCodec(_) => "unsupported_video_codec",
            Refusal::TooManyAudioTracks(_) => "too_many_audio_tracks",
            Refusal::UnsupportedAudioCodec(_) => "unsupported_audio_codec",
            Refusal::TooLong { .. } => "too_long",
        }
    }
}

/// Checks the file at `path`. An I/O error (not a refusal) is the caller's problem.
pub fn validate_file(path: &Path) -> io::Result<Result<VideoInfo, Refusal>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    validate(&mut BufReader::new(file), len)
}

/// Checks the `len` bytes readable from `src`.
pub fn validate<R: Read + Seek>(src: &mut R, len: u64) -> io::Result<Result<VideoInfo, Refusal>> {
    if len > MAX_BYTES {
        return Ok(Err(Refusal::TooLarge { bytes: len }));
    }
    let top = match walk_top_level(src, len)? {
        Ok(top) => top,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let Some(moov) = top.moov else {
        return Ok(Err(Refusal::Truncated("it has no moov box".into())));
    };
    if top.moof {
        return Ok(Err(Refusal::Fragmented));
    }
    // mp4parse reads the header boxes only: ftyp then moov, as one small buffer.
    let mut head = Vec::new();
    for (start, size) in [top.ftyp, moov] {
        src.seek(SeekFrom::Start(start))?;
        src.take(size).read_to_end(&mut head)?;
    }
    Ok(inspect(&head, len))
}

/// Where the top-level boxes are.
struct TopLevel {
    ftyp: (u64, u64),
    moov: Option<(u64, u64)>,
    moof: bool,
}

/// Walks the top-level boxes by their headers (seeking over `mdat`): the first must be `ftyp`,
/// none may reach past the end.
fn walk_top_level<R: Read + Seek>(src: &mut R, len: u64) -> io::Result<Result<TopLevel, Refusal>> {
    let mut at = 0;
    let mut top = TopLevel {
        ftyp: (0, 0),
        moov: None,
        moof: false,
    };
    while at < len {
        src.seek(SeekFrom::Start(at))?;
        let Some((kind, size)) = read_box_header(src, len - at)? else {
            return Ok(Err(if at == 0 {
                Refusal::NotMp4
            } else {
                Refusal::Truncated(format!("a box header is cut off at byte {at}"))
            }));
        };
        if at == 0 && &kind != b"ftyp" {
            return Ok(Err(Refusal::NotMp4));
        }
        if size < 8 {
            return Ok(Err(if at == 0 {
                Refusal::NotMp4
            } else {
                Refusal::Malformed(format!("a box of {size} bytes at byte {at}"))
            }));
        }
        if size > len - at {
            return Ok(Err(if at == 0 {
                Refusal::NotMp4
            } else {
                Refusal::Truncated(format!(
                    "the {} box at byte {at} needs {size} bytes, {} are there",
                    String::from_utf8_lossy(&kind),
                    len - at
                ))
            }));
        }
        match &kind {
            b"ftyp" if at == 0 => top.ftyp = (at, size),
            b"moov" if top.moov.is_some() => {
                return Ok(Err(Refusal::Malformed("two moov boxes".into())));
            }
            b"moov" if size > MAX_MOOV_BYTES => {
                return Ok(Err(Refusal::Malformed(format!(
                    "a moov box of {size} bytes"
                ))));
            }
            b"moov" => top.moov = Some((at, size)),
            b"moof" => top.moof = true,
            _ => {}
        }
        at += size;
    }
    if top.ftyp.1 == 0 {
        return Ok(Err(Refusal::NotMp4));
    }
    Ok(Ok(top))
}

/// The type and whole size of the box whose header starts here; `None` when fewer bytes than
/// a header are left. A size of 0 means "to the end of the file".
fn read_box_header<R: Read>(src: &mut R, left: u64) -> io::Result<Option<([u8; 4], u64)>> {
    if left < 8 {
        return Ok(None);
    }
    let mut header = [0u8; 8];
    src.read_exact(&mut header)?;
    let kind = [header[4], header[5], header[6], header[7]];
    let size = u64::from(u32::from_be_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    Ok(Some(match size {
        0 => (kind, left),
        1 => {
            if left < 16 {
                return Ok(None);
            }
            let mut large = [0u8; 8];
            src.read_exact(&mut large)?;
            (kind, u64::from_be_bytes(large))
        }
        size => (kind, size),
    }))
}

/// The checks on what `moov` says; `head` is `ftyp` + `moov`, `len` the file's size.
fn inspect(head: &[u8], len: u64) -> Result<VideoInfo, Refusal> {
    let context =
        read_mp4(&mut io::Cursor::new(head)).map_err(|e| Refusal::Malformed(format!("{e:?}")))?;
    if context.mvex.is_some() {
        return Err(Refusal::Fragmented);
    }
    let videos: Vec<_> = context
        .tracks
        .iter()
        .filter(|t| t.track_type == TrackType::Video)
        .collect();
    let audios: Vec<_> = context
        .tracks
        .iter()
        .filter(|t| t.track_type == TrackType::Audio)
        .collect();
    let video = match videos.as_slice() {
        [] => return Err(Refusal::NoVideo),
        [one] => *one,
        many => return Err(Refusal::TooManyVideoTracks(many.len())),
    };
    if audios.len() > 1 {
        return Err(Refusal::TooManyAudioTracks(audios.len()));
    }
    let (video_codec, width, height) = video_entry(video)?;
    let audio_codec = audios.first().map(|a| audio_entry(a)).transpose()?;

    let mut duration_ms = 0;
    for track in videos.iter().chain(&audios) {
        check_extents(track, len)?;
        duration_ms = duration_ms.max(track_duration_ms(track)?);
    }
    if duration_ms > MAX_DURATION_MS {
        return Err(Refusal::TooLong { duration_ms });
    }
    Ok(VideoInfo {
        duration_ms,
        width,
        height,
        video_codec,
        audio_codec,
        bytes: len,
    })
}

fn codec_name(codec: CodecType) -> String {
    match codec {
        CodecType::Unknown => "an unknown codec".into(),
        other => format!("{other:?}"),
    }
}

fn only_entry(track: &mp4parse::Track) -> Result<&SampleEntry, Refusal> {
    let stsd = track
        .stsd
        .as_ref()
        .ok_or_else(|| Refusal::Malformed("a track without a sample description".into()))?;
    match stsd.descriptions.as_slice() {
        [one] => Ok(one),
        [] => Err(Refusal::Malformed("an empty sample description".into())),
        _ => Err(Refusal::Malformed(
            "a track with several sample descriptions".into(),
        )),
    }
}

fn video_entry(track: &mp4parse::Track) -> Result<(String, u32, u32), Refusal> {
    let entry = match only_entry(track)? {
        SampleEntry::Video(v) => v,
        _ => return Err(Refusal::UnsupportedVideoCodec("an unknown codec".into())),
    };
    match (&entry.codec_type, &entry.codec_specific) {
        (CodecType::H264, VideoCodecSpecific::AVCConfig(avcc)) if avcc.len() >= 4 => Ok((
            format!("avc1.{:02x}{:02x}{:02x}", avcc[1], avcc[2], avcc[3]),
            u32::from(entry.width),
            u32::from(entry.height),
        )),
        (CodecType::H264, _) => Err(Refusal::Malformed("an H.264 track without avcC".into())),
        (other, _) => Err(Refusal::UnsupportedVideoCodec(codec_name(*other))),
    }
}

fn audio_entry(track: &mp4parse::Track) -> Result<String, Refusal> {
    let entry = match only_entry(track)? {
        SampleEntry::Audio(a) => a,
        _ => return Err(Refusal::UnsupportedAudioCodec("an unknown codec".into())),
    };
    match (&entry.codec_type, &entry.codec_specific) {
        (CodecType::AAC, AudioCodecSpecific::ES_Descriptor(esds)) => {
            Ok(format!("mp4a.40.{}", esds.audio_object_type.unwrap_or(2)))
        }
        (CodecType::Opus, AudioCodecSpecific::OpusSpecificBox(_)) => Ok("opus".into()),
        (other, _) => Err(Refusal::UnsupportedAudioCodec(codec_name(*other))),
    }
}

/// The track's length from its sample table (the sum of the sample durations), or from its
/// header when that is longer: a file cannot pass for shorter than either says.
fn track_duration_ms(track: &mp4parse::Track) -> Result<u64, Refusal> {
    let timescale = track
        .timescale
        .map(|t| t.0)
        .filter(|&t| t > 0)
        .ok_or_else(|| Refusal::Malformed("a track without a timescale".into()))?;
    let from_table: u64 = track.stts.as_ref().map_or(0, |stts| {
        stts.samples
            .iter()
            .map(|s| u64::from(s.sample_count) * u64::from(s.sample_delta))
            .fold(0u64, u64::saturating_add)
    });
    let from_header = track.duration.map_or(0, |d| d.0);
    let ticks = from_table.max(from_header);
    Ok(u64::try_from(u128::from(ticks) * 1000 / u128::from(timescale)).unwrap_or(u64::MAX))
}

/// Every chunk of samples (offset from `stco`, sizes from `stsz`, samples per chunk from
/// `stsc`) must end inside the file.
fn check_extents(track: &mp4parse::Track, len: u64) -> Result<(), Refusal> {
    let missing = |what: &str| Refusal::Malformed(format!("a track without {what}"));
    let stsc = track.stsc.as_ref().ok_or_else(|| missing("stsc"))?;
    let stco = track.stco.as_ref().ok_or_else(|| missing("stco"))?;
    let stsz = track.stsz.as_ref().ok_or_else(|| missing("stsz"))?;
    let sample_count = if stsz.sample_size > 0 {
        None
    } else {
        Some(stsz.sample_sizes.len())
    };
    let mut sample = 0usize;
    let runs = stsc.samples.as_slice();
    for (chunk, &offset) in stco.offsets.iter().enumerate() {
        let chunk_no = chunk as u64 + 1;
        // The last run whose first chunk is at or before this one.
        let per_chunk = runs
            .iter()
            .take_while(|r| u64::from(r.first_chunk) <= chunk_no)
            .last()
            .map_or(0, |r| r.samples_per_chunk as usize);
        let bytes: u64 = if stsz.sample_size > 0 {
            u64::from(stsz.sample_size) * per_chunk as u64
        } else {
            let sizes = stsz
                .sample_sizes
                .get(sample..sample + per_chunk)
                .ok_or_else(|| Refusal::Malformed("stsc names more samples than stsz".into()))?;
            sizes.iter().map(|&s| u64::from(s)).sum()
        };
        sample += per_chunk;
        if offset.saturating_add(bytes) > len {
            return Err(Refusal::Truncated(format!(
                "samples at bytes {offset}..{} of a {len}-byte file",
                offset.saturating_add(bytes)
            )));
        }
    }
    if sample == 0 {
        return Err(Refusal::Malformed("a track without samples".into()));
    }
    if sample_count.is_some_and(|n| n != sample) {
        return Err(Refusal::Malformed(
            "stsc and stsz disagree on the number of samples".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    /// Makes `name` in `dir` with ffmpeg's test sources; `None` (and a message) without ffmpeg.
    fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> Option<PathBuf> {
        let out = dir.join(name);
        let status = match Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .arg(&out)
            .status()
        {
            Ok(status) => status,
            Err(e) => {
                eprintln!("SKIPPED: ffmpeg is not installed ({e}); scripts/test.sh installs it");
                return None;
            }
        };
        assert!(status.success(), "ffmpeg {args:?} failed");
        Some(out)
    }

    const TESTSRC: [&str; 4] = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"];
    const SINE: [&str; 4] = ["-f", "lavfi", "-i", "sine=f=440"];

    fn args<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
        parts.concat()
    }

    fn check(path: &Path) -> Result<VideoInfo, Refusal> {
        validate_file(path).expect("readable")
    }

    #[test]
    fn h264_with_aac_or_opus_is_accepted_with_its_codecs() {
        let dir = tempfile::tempdir().unwrap();
        let h264 = [
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ];
        let Some(aac) = ffmpeg(
            dir.path(),
            "aac.mp4",
            &args(&[&TESTSRC, &SINE, &h264, &["-c:a", "aac", "-t", "3"]]),
        ) else {
            return;
        };
        let info = check(&aac).unwrap();
        assert!((2900..=3100).contains(&info.duration_ms), "{info:?}");
        assert_eq!((info.width, info.height), (320, 240));
        assert!(info.video_codec.starts_with("avc1."), "{info:?}");
        assert_eq!(info.video_codec.len(), "avc1.PPCCLL".len());
        assert_eq!(info.audio_codec.as_deref(), Some("mp4a.40.2"));
        assert_eq!(info.bytes, std::fs::metadata(&aac).unwrap().len());
        assert_eq!(info.codecs(), format!("{},mp4a.40.2", info.video_codec));

        let opus = ffmpeg(
            dir.path(),
            "opus.mp4",
            &args(&[
                &TESTSRC,
                &["-f", "lavfi", "-i", "sine=f=440:sample_rate=48000"],
                &h264,
                &["-c:a", "libopus", "-t", "2", "-movflags", "+faststart"],
            ]),
        )
        .unwrap();
        let info = check(&opus).unwrap();
        assert_eq!(info.audio_codec.as_deref(), Some("opus"));

        let silent = ffmpeg(
            dir.path(),
            "silent.mp4",
            &args(&[&TESTSRC, &h264, &["-t", "1"]]),
        )
        .unwrap();
        assert_eq!(check(&silent).unwrap().audio_codec, None);
    }

    #[test]
    fn other_containers_and_codecs_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let Some(webm) = ffmpeg(
            dir.path(),
            "vp9.webm",
            &args(&[
                &TESTSRC,
                &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-t", "1"],
            ]),
        ) else {
            return;
        };
        assert_eq!(check(&webm).unwrap_err().code(), "not_mp4");
        // The same VP9 in an MP4 named .mp4: the container passes, the codec does not.
        let vp9 = ffmpeg(
            dir.path(),
            "vp9.mp4",
            &args(&[
                &TESTSRC,
                &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-t", "1"],
            ]),
        )
        .unwrap();
        assert_eq!(check(&vp9).unwrap_err().code(), "unsupported_video_codec");
        let mp3 = ffmpeg(
            dir.path(),
            "mp3.mp4",
            &args(&[
                &TESTSRC,
                &SINE,
                &[
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-c:a",
                    "libmp3lame",
                ],
                &["-t", "1"],
            ]),
        );
        // Debian's ffmpeg has LAME; should a build lack it, ffmpeg fails and the test says so.
        let mp3 = mp3.unwrap();
        let refusal = check(&mp3).unwrap_err();
        assert_eq!(refusal.code(), "unsupported_audio_codec", "{refusal}");
        let audio_only = ffmpeg(
            dir.path(),
            "audio.mp4",
            &args(&[&SINE, &["-c:a", "aac", "-t", "1"]]),
        )
        .unwrap();
        assert_eq!(check(&audio_only).unwrap_err().code(), "no_video");

        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, b"this is not a video at all, whatever its name").unwrap();
        assert_eq!(check(&text).unwrap_err().code(), "not_mp4");
        std::fs::write(&text, b"").unwrap();
        assert_eq!(check(&text).unwrap_err().code(), "not_mp4");
    }

    #[test]
    fn eleven_minutes_are_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let Some(long) = ffmpeg(
            dir.path(),
            "long.mp4",
            &args(&[
                &["-f", "lavfi", "-i", "color=c=gray:size=64x64:rate=1"],
                &["-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono"],
                &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
                &["-b:a", "8k", "-t", "660"],
            ]),
        ) else {
            return;
        };
        let refusal = check(&long).unwrap_err();
        assert_eq!(refusal.code(), "too_long");
        assert!(refusal.to_string().contains("11:00"), "{refusal}");
    }

    #[test]
    fn a_cut_off_file_is_truncated_wherever_the_moov_is() {
        let dir = tempfile::tempdir().unwrap();
        let base = args(&[
            &TESTSRC,
            &SINE,
            &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            &["-t", "3"],
        ]);
        let Some(moov_last) = ffmpeg(dir.path(), "last.mp4", &base) else {
            return;
        };
        let faststart = ffmpeg(
            dir.path(),
            "first.mp4",
            &[base.as_slice(), &["-movflags", "+faststart"]].concat(),
        )
        .unwrap();
        for whole in [moov_last, faststart] {
            let bytes = std::fs::read(&whole).unwrap();
            assert!(check(&whole).is_ok());
            for keep in [bytes.len() / 2, bytes.len() - 1, 40] {
                let cut = dir.path().join("cut.mp4");
                std::fs::write(&cut, &bytes[..keep]).unwrap();
                let refusal = check(&cut).unwrap_err();
                assert_eq!(refusal.code(), "truncated", "{keep} bytes: {refusal}");
            }
        }
    }

    #[test]
    fn samples_outside_the_file_are_truncated_even_when_the_boxes_fit() {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = ffmpeg(
            dir.path(),
            "fast.mp4",
            &args(&[
                &TESTSRC,
                &["-c:v", "libx264", "-preset", "ultrafast", "-t", "1"],
                &["-movflags", "+faststart"],
            ]),
        ) else {
            return;
        };
        let mut bytes = std::fs::read(&path).unwrap();
        // faststart: ftyp, moov, …, mdat last. Cut the file and shrink mdat's size to match,
        // so only the sample table shows what is missing.
        let mut mdat = 0;
        while &bytes[mdat + 4..mdat + 8] != b"mdat" {
            let size = u32::from_be_bytes(bytes[mdat..mdat + 4].try_into().unwrap());
            mdat += size as usize;
        }
        bytes.truncate(bytes.len() - 1000);
        let size = u32::try_from(bytes.len() - mdat).unwrap();
        bytes[mdat..mdat + 4].copy_from_slice(&size.to_be_bytes());
        let cut = dir.path().join("cut.mp4");
        std::fs::write(&cut, &bytes).unwrap();
        let refusal = check(&cut).unwrap_err();
        assert_eq!(refusal.code(), "truncated", "{refusal}");
        assert!(
            refusal.to_string().contains("samples at bytes"),
            "{refusal}"
        );
    }

    #[test]
    fn the_size_limit_comes_first() {
        let mut huge = io::Cursor::new(Vec::new());
        let refusal = validate(&mut huge, MAX_BYTES + 1).unwrap().unwrap_err();
        assert_eq!(refusal.code(), "too_large");
    }
}
