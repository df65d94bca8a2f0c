//! Where a keyframe starts in a video RTP stream, per codec: the only packets at which a viewer
//! may move from one simulcast layer to another (its decoder can start there).

/// The video payload formats the relay forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoFormat {
    Vp8,
    Vp9,
    H264,
    Av1,
    /// Anything else: no packet is known to start a keyframe, so a viewer never switches.
    Other,
}

impl VideoFormat {
    pub(crate) fn of(mime: &str) -> VideoFormat {
        match mime.to_ascii_lowercase().as_str() {
            "video/vp8" => VideoFormat::Vp8,
            "video/vp9" => VideoFormat::Vp9,
            "video/h264" => VideoFormat::H264,
            "video/av1" => VideoFormat::Av1,
            _ => VideoFormat::Other,
        }
    }

    /// Whether `payload` holds the start of a keyframe (the first packet of it for VP8, VP9 and
    /// AV1; for H.264 a packet with a parameter set or an IDR slice, see [`KeyframeStarts`]).
    pub(crate) fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            VideoFormat::Vp8 => vp8(payload),
            VideoFormat::Vp9 => vp9(payload),
            VideoFormat::H264 => h264(payload),
            VideoFormat::Av1 => payload.first().is_some_and(|b| b & 0x08 != 0),
            VideoFormat::Other => false,
        }
    }
}

/// RFC 7741: the descriptor's S bit with partition 0, then the frame header's P bit clear.
fn vp8(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&x) = p.get(at) else { return false };
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: 15 bits when its M bit is set, else 7.
            let Some(&pid) = p.get(at) else { return false };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    p.get(at).is_some_and(|header| header & 0x01 == 0)
}

/// The VP9 RTP descriptor: B (start of a frame) set, P (inter-predicted) clear, and, with layer
/// indices, spatial layer 0.
fn vp9(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let start = first & 0x08 != 0;
    let inter = first & 0x40 != 0;
    if !start || inter {
        return false;
    }
    if first & 0x20 == 0 {
        return true;
    }
    // L: the layer indices follow the picture id (if I).
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&pid) = p.get(at) else { return false };
        at += if pid & 0x80 != 0 { 2 } else { 1 };
    }
    p.get(at).is_some_and(|layers| (layers >> 1) & 0x07 == 0)
}

/// RFC 6184: a sequence or picture parameter set, or an IDR slice, alone, in a STAP-A, or at
/// the start of an FU-A.
fn h264(p: &[u8]) -> bool {
    let key = |nal_type: u8| matches!(nal_type, 5 | 7 | 8);
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        24 => {
            let mut at = 1;
            while at + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
                if key(p[at + 2] & 0x1f) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1f)),
        t => key(t),
    }
}

/// Keyframe starts of one stream: for H.264 the first keyframe packet of a timestamp (the
/// parameter sets, when an encoder sends them in packets of their own before the IDR), not
/// every packet of the keyframe.
#[derive(Debug)]
pub(crate) struct KeyframeStarts {
    format: VideoFormat,
    last: Option<u32>,
}

impl KeyframeStarts {
    pub(crate) fn new(format: VideoFormat) -> KeyframeStarts {
        KeyframeStarts { format, last: None }
    }

    pub(crate) fn check(&mut self, timestamp: u32, payload: &[u8]) -> bool {
        if !self.format.starts_keyframe(payload) || self.last == Some(timestamp) {
            return false;
        }
        self.last = Some(timestamp);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_start_at_partition_zero_with_p_clear() {
        let f = VideoFormat::Vp8;
        assert!(f.starts_keyframe(&[0x10, 0x00]));
        assert!(!f.starts_keyframe(&[0x10, 0x01]), "an inter frame");
        assert!(!f.starts_keyframe(&[0x00, 0x00]), "not the start");
        // X, I with a 15-bit picture id, L, T.
        assert!(f.starts_keyframe(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x9c]));
        assert!(!f.starts_keyframe(&[0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x9d]));
        assert!(!f.starts_keyframe(&[0x90, 0xe0]), "truncated");
    }

    #[test]
    fn h264_keyframes_are_parameter_sets_or_idr() {
        let f = VideoFormat::H264;
        assert!(f.starts_keyframe(&[0x67, 0x42]), "SPS");
        assert!(f.starts_keyframe(&[0x65, 0x88]), "IDR");
        assert!(!f.starts_keyframe(&[0x41, 0x9a]), "a P slice");
        assert!(
            f.starts_keyframe(&[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]),
            "STAP-A with SPS and PPS"
        );
        assert!(f.starts_keyframe(&[0x7c, 0x85]), "FU-A start of an IDR");
        assert!(!f.starts_keyframe(&[0x7c, 0x45]), "FU-A end");
        let mut starts = KeyframeStarts::new(f);
        assert!(starts.check(3000, &[0x67]));
        assert!(!starts.check(3000, &[0x68]));
        assert!(!starts.check(3000, &[0x7c, 0x85]));
        assert!(starts.check(6000, &[0x65]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(VideoFormat::Vp9.starts_keyframe(&[0x08]));
        assert!(!VideoFormat::Vp9.starts_keyframe(&[0x48]));
        assert!(VideoFormat::Av1.starts_keyframe(&[0x18]));
        assert!(!VideoFormat::Av1.starts_keyframe(&[0x10]));
        assert!(!VideoFormat::of("video/foo").starts_keyframe(&[0xff]));
    }
}
