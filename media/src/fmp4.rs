//! A fragmented MP4 (CMAF) writer for what the relay records: one H.264
//! video track (`avc1`, track 1, timescale 90000) and one Opus audio track
//! (`Opus` + `dOps`, track 2, timescale 48000).
//!
//! The init segment is `ftyp` + `moov` (empty sample tables, `mvex`/`trex`);
//! each media segment is `moof` + `mdat` (no `styp`): per track a `traf` with
//! `tfhd` (default-base-is-moof), `tfdt` (64-bit decode time) and a `trun`
//! giving every sample's duration, size and flags. Hand-written: about twenty
//! box types, each a few lines (see `docs/video.md`, "Recording").

/// Track ids in every recording.
pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;
pub const VIDEO_TIMESCALE: u32 = 90_000;
pub const AUDIO_TIMESCALE: u32 = 48_000;

/// Opus decoder delay the encoders WebRTC uses (libopus) add: 6.5 ms.
pub const OPUS_PRE_SKIP: u16 = 312;

/// The H.264 decoder configuration (`avcC`) of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub width: u16,
    pub height: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    pub channels: u8,
}

/// One sample of a track run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    pub duration: u32,
    pub size: u32,
    pub keyframe: bool,
}

/// One track's samples in a media segment: their data back to back.
#[derive(Debug, Clone)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale.
    pub base_decode_time: u64,
    pub samples: &'a [SampleInfo],
    pub data: &'a [u8],
}

/// A box under construction; `close` patches its size.
struct BoxWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> BoxWriter<'a> {
    fn open(out: &'a mut Vec<u8>, kind: &[u8; 4]) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(kind);
        Self { out, start }
    }

    fn full(out: &'a mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32) -> Self {
        let b = Self::open(out, kind);
        b.out.push(version);
        b.out.extend_from_slice(&flags.to_be_bytes()[1..]);
        b
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.out.extend_from_slice(v);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.out.resize(self.out.len() + n, 0);
        self
    }
    fn matrix(&mut self) -> &mut Self {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
        self
    }
    /// A child box, written by `f`.
    fn child(&mut self, kind: &[u8; 4], f: impl FnOnce(&mut BoxWriter)) -> &mut Self {
        let mut b = BoxWriter::open(self.out, kind);
        f(&mut b);
        b.close();
        self
    }
    fn full_child(
        &mut self,
        kind: &[u8; 4],
        version: u8,
        flags: u32,
        f: impl FnOnce(&mut BoxWriter),
    ) -> &mut Self {
        let mut b = BoxWriter::full(self.out, kind, version, flags);
        f(&mut b);
        b.close();
        self
    }
    fn close(self) {
        let size = (self.out.len() - self.start) as u32;
        self.out[self.start..self.start + 4].copy_from_slice(&size.to_be_bytes());
    }
}

/// `ftyp` + `moov` for the given tracks (at least one).
pub fn init_segment(video: Option<&AvcConfig>, audio: Option<&OpusConfig>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut ftyp = BoxWriter::open(&mut out, b"ftyp");
    ftyp.bytes(b"iso6").u32(0);
    for brand in [b"iso6", b"cmfc", b"iso5", b"mp41"] {
        ftyp.bytes(brand);
    }
    ftyp.close();

    let mut moov = BoxWriter::open(&mut out, b"moov");
    moov.full_child(b"mvhd", 0, 0, |b| {
        b.u32(0).u32(0).u32(1000).u32(0); // creation, modification, timescale, duration
        b.u32(0x0001_0000).u16(0x0100).zeros(10).matrix().zeros(24);
        b.u32(3); // next_track_ID
    });
    if let Some(avc) = video {
        trak(&mut moov, VIDEO_TRACK, VIDEO_TIMESCALE, Some(avc), None);
    }
    if let Some(opus) = audio {
        trak(&mut moov, AUDIO_TRACK, AUDIO_TIMESCALE, None, Some(opus));
    }
    moov.child(b"mvex", |b| {
        for (present, id) in [
            (video.is_some(), VIDEO_TRACK),
            (audio.is_some(), AUDIO_TRACK),
        ] {
            if present {
                b.full_child(b"trex", 0, 0, |t| {
                    t.u32(id).u32(1).u32(0).u32(0).u32(0);
                });
            }
        }
    });
    moov.close();
    out
}

/// The stored init of a part with its length filled in, for a download of the whole part: a
/// live recording's init says nothing of its length (`mvhd` duration 0, no `mehd`), and a
/// progressive player (Chromium, ffmpeg) then takes the first fragment's length for the whole
/// file's and stops there. Sets `mvhd`'s duration and puts a `mehd` (ISO/IEC 14496-12
/// §8.8.2) first in `mvex`, both in the movie's timescale (ms, as [`init_segment`] writes
/// it). `None` when `init` is not what [`init_segment`] writes.
pub fn with_duration(init: &[u8], duration_ms: u64) -> Option<Vec<u8>> {
    let boxes = children(init)?;
    let mut out = Vec::with_capacity(init.len() + 20);
    for (kind, whole) in boxes {
        if kind != *b"moov" {
            out.extend_from_slice(whole);
            continue;
        }
        let mut moov = Vec::with_capacity(whole.len() + 20);
        for (kind, child) in children(&whole[8..])? {
            match &kind {
                b"mvhd" => {
                    // version 0: size, type, version+flags, creation, modification, timescale.
                    let mut mvhd = child.to_vec();
                    if mvhd.get(8) != Some(&0) || mvhd.len() < 28 {
                        return None;
                    }
                    let ms = u32::try_from(duration_ms).unwrap_or(u32::MAX);
                    mvhd[24..28].copy_from_slice(&ms.to_be_bytes());
                    moov.extend_from_slice(&mvhd);
                }
                b"mvex" => {
                    let mut mvex = Vec::with_capacity(child.len() + 20);
                    mvex.extend_from_slice(&((child.len() + 20) as u32).to_be_bytes());
                    mvex.extend_from_slice(b"mvex");
                    mvex.extend_from_slice(&20u32.to_be_bytes());
                    mvex.extend_from_slice(b"mehd");
                    mvex.extend_from_slice(&(1u32 << 24).to_be_bytes()); // version 1
                    mvex.extend_from_slice(&duration_ms.to_be_bytes());
                    mvex.extend_from_slice(&child[8..]);
                    moov.extend_from_slice(&mvex);
                }
                _ => moov.extend_from_slice(child),
            }
        }
        out.extend_from_slice(&((moov.len() + 8) as u32).to_be_bytes());
        out.extend_from_slice(b"moov");
        out.extend_from_slice(&moov);
    }
    Some(out)
}

/// The boxes one after another in `data` (32-bit sizes, as [`init_segment`] writes them).
fn children(data: &[u8]) -> Option<Vec<([u8; 4], &[u8])>> {
    let mut boxes = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if size < 8 || size > rest.len() {
            return None;
        }
        boxes.push((rest[4..8].try_into().ok()?, &rest[..size]));
        rest = &rest[size..];
    }
    Some(boxes)
}

fn trak(
    moov: &mut BoxWriter,
    id: u32,
    timescale: u32,
    avc: Option<&AvcConfig>,
    opus: Option<&OpusConfig>,
) {
    let (width, height) = avc.map_or((0, 0), |a| (a.width, a.height));
    moov.child(b"trak", |trak| {
        // flags: enabled, in movie, in preview.
        trak.full_child(b"tkhd", 0, 3, |b| {
            b.u32(0).u32(0).u32(id).u32(0).u32(0); // times, id, reserved, duration
            b.zeros(8).u16(0).u16(0); // reserved, layer, alternate_group
            b.u16(if opus.is_some() { 0x0100 } else { 0 }).u16(0);
            b.matrix()
                .u32(u32::from(width) << 16)
                .u32(u32::from(height) << 16);
        });
        trak.child(b"mdia", |mdia| {
            mdia.full_child(b"mdhd", 0, 0, |b| {
                b.u32(0).u32(0).u32(timescale).u32(0);
                b.u16(0x55c4).u16(0); // language "und"
            });
            mdia.full_child(b"hdlr", 0, 0, |b| {
                b.u32(0);
                if avc.is_some() {
                    b.bytes(b"vide").zeros(12).bytes(b"VideoHandler\0");
                } else {
                    b.bytes(b"soun").zeros(12).bytes(b"SoundHandler\0");
                }
            });
            mdia.child(b"minf", |minf| {
                if avc.is_some() {
                    minf.full_child(b"vmhd", 0, 1, |b| {
                        b.zeros(8);
                    });
                } else {
                    minf.full_child(b"smhd", 0, 0, |b| {
                        b.zeros(4);
                    });
                }
                minf.child(b"dinf", |dinf| {
                    dinf.full_child(b"dref", 0, 0, |b| {
                        b.u32(1).full_child(b"url ", 0, 1, |_| {});
                    });
                });
                minf.child(b"stbl", |stbl| {
                    stbl.full_child(b"stsd", 0, 0, |stsd| {
                        stsd.u32(1);
                        if let Some(avc) = avc {
                            avc1(stsd, avc);
                        }
                        if let Some(opus) = opus {
                            opus_entry(stsd, opus);
                        }
                    });
                    stbl.full_child(b"stts", 0, 0, |b| {
                        b.u32(0);
                    });
                    stbl.full_child(b"stsc", 0, 0, |b| {
                        b.u32(0);
                    });
                    stbl.full_child(b"stsz", 0, 0, |b| {
                        b.u32(0).u32(0);
                    });
                    stbl.full_child(b"stco", 0, 0, |b| {
                        b.u32(0);
                    });
                });
            });
        });
    });
}

fn avc1(stsd: &mut BoxWriter, avc: &AvcConfig) {
    stsd.child(b"avc1", |b| {
        b.zeros(6).u16(1); // reserved, data_reference_index
        b.zeros(16); // pre_defined, reserved
        b.u16(avc.width).u16(avc.height);
        b.u32(0x0048_0000).u32(0x0048_0000).u32(0).u16(1); // 72 dpi, reserved, frame_count
        b.zeros(32).u16(0x0018).u16(0xffff); // compressorname, depth, pre_defined
        b.child(b"avcC", |c| {
            let sps = &avc.sps;
            c.u8(1).u8(sps[1]).u8(sps[2]).u8(sps[3]);
            c.u8(0xff); // 4-byte NAL lengths
            c.u8(0xe1).u16(sps.len() as u16).bytes(sps);
            c.u8(1).u16(avc.pps.len() as u16).bytes(&avc.pps);
        });
    });
}

fn opus_entry(stsd: &mut BoxWriter, opus: &OpusConfig) {
    stsd.child(b"Opus", |b| {
        b.zeros(6).u16(1).zeros(8);
        b.u16(u16::from(opus.channels)).u16(16).u32(0);
        b.u32(AUDIO_TIMESCALE << 16);
        b.child(b"dOps", |d| {
            d.u8(0)
                .u8(opus.channels)
                .u16(OPUS_PRE_SKIP)
                .u32(AUDIO_TIMESCALE);
            d.u16(0).u8(0); // output gain, channel mapping family 0
        });
    });
}

const SAMPLE_SYNC: u32 = 0x0200_0000; // sample_depends_on = 2 (no other sample)
const SAMPLE_NON_SYNC: u32 = 0x0101_0000; // depends on others, non-sync

/// `moof` + `mdat` with the runs' data in order.
pub fn media_segment(sequence_number: u32, runs: &[TrackRun]) -> Vec<u8> {
    let data_len: usize = runs.iter().map(|r| r.data.len()).sum();
    let mut out = Vec::with_capacity(data_len + 256);
    let mut offsets = Vec::with_capacity(runs.len());
    let mut moof = BoxWriter::open(&mut out, b"moof");
    moof.full_child(b"mfhd", 0, 0, |b| {
        b.u32(sequence_number);
    });
    for run in runs {
        moof.child(b"traf", |traf| {
            traf.full_child(b"tfhd", 0, 0x02_0000, |b| {
                b.u32(run.track_id);
            });
            traf.full_child(b"tfdt", 1, 0, |b| {
                b.u64(run.base_decode_time);
            });
            // data offset, sample duration, size and flags present.
            traf.full_child(b"trun", 0, 0x0701, |b| {
                b.u32(run.samples.len() as u32);
                offsets.push(b.out.len());
                b.u32(0);
                for s in run.samples {
                    let flags = if s.keyframe {
                        SAMPLE_SYNC
                    } else {
                        SAMPLE_NON_SYNC
                    };
                    b.u32(s.duration).u32(s.size).u32(flags);
                }
            });
        });
    }
    moof.close();
    let moof_len = out.len();
    let mut at = moof_len + 8;
    for (run, offset) in runs.iter().zip(offsets) {
        out[offset..offset + 4].copy_from_slice(&(at as u32).to_be_bytes());
        at += run.data.len();
    }
    out.extend_from_slice(&((data_len + 8) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for run in runs {
        out.extend_from_slice(run.data);
    }
    out
}
