//! The little of H.264 a muxer needs: NAL units of an AVCC access unit, and
//! the profile, level and picture size of a sequence parameter set
//! (ITU-T H.264 §7.3.2.1.1), for the `avcC` box and the RFC 6381 codec string.

/// NAL unit types the recorder looks at.
pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;

/// The NAL units of an AVCC access unit (each prefixed by a 4-byte big-endian
/// length); stops at the first length that runs past the end.
pub fn avcc_nalus(access_unit: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = access_unit;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let nalu = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(nalu)
    })
}

pub fn nal_type(nalu: &[u8]) -> u8 {
    nalu.first().map_or(0, |b| b & 0x1f)
}

/// Whether an access unit's first slice begins its picture: `first_mb_in_slice`, the slice
/// header's first Exp-Golomb code (§7.3.3), is 0, which is the single bit `1`. An encoder that
/// cuts a picture into several slices (libx264 with sliced threads) sends each in its own
/// packets; a unit that lost its first slices to a hole starts with a later one and decodes
/// corrupt, keyframe or not. A unit without slices says nothing and passes.
pub fn starts_picture(access_unit: &[u8]) -> bool {
    avcc_nalus(access_unit)
        .find(|n| matches!(nal_type(n), NAL_SLICE | NAL_IDR))
        .is_none_or(|slice| slice.get(1).is_some_and(|b| b & 0x80 != 0))
}

/// What a sequence parameter set says that a container must repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    /// The constraint flags byte (`profile_iop` in SDP terms).
    pub constraints: u8,
    pub level_idc: u8,
    pub width: u16,
    pub height: u16,
}

impl SpsInfo {
    /// RFC 6381 / ISO 14496-15 codec string: `avc1.PPCCLL`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraints, self.level_idc
        )
    }
}

/// Parses a sequence parameter set NAL unit (with its one-byte header).
pub fn parse_sps(nalu: &[u8]) -> Option<SpsInfo> {
    if nal_type(nalu) != NAL_SPS || nalu.len() < 4 {
        return None;
    }
    let rbsp = unescape(&nalu[1..]);
    let mut r = Bits::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraints = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.bits(1)? == 1 {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (unit_x, unit_y) = match chroma_format_idc {
            0 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        crop_x = (left + right) * unit_x;
        crop_y = (top + bottom) * unit_y;
    }
    let width = (width_mbs * 16).checked_sub(crop_x)?;
    let height = ((2 - frame_mbs_only) * height_map_units * 16).checked_sub(crop_y)?;
    Some(SpsInfo {
        profile_idc,
        constraints,
        level_idc,
        width: u16::try_from(width).ok()?,
        height: u16::try_from(height).ok()?,
    })
}

fn skip_scaling_list(r: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// An MSB-first bit reader with Exp-Golomb codes.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avcc(nalus: &[&[u8]]) -> Vec<u8> {
        nalus
            .iter()
            .flat_map(|n| {
                (n.len() as u32)
                    .to_be_bytes()
                    .into_iter()
                    .chain(n.iter().copied())
            })
            .collect()
    }

    #[test]
    fn a_unit_starts_its_picture_only_with_the_first_slice() {
        // IDR slices: first_mb_in_slice 0 (the bit 1) and 40 (ue 40 = 00000101001).
        let first: &[u8] = &[0x65, 0x88, 0x84];
        let later: &[u8] = &[0x65, 0x05, 0x20];
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
        assert!(starts_picture(&avcc(&[sps, first, later])));
        assert!(!starts_picture(&avcc(&[later])), "the first slice was lost");
        assert!(!starts_picture(&avcc(&[sps, later])));
        // a P slice (type 1) is read the same way
        assert!(starts_picture(&avcc(&[&[0x41, 0x9a, 0x00]])));
        assert!(!starts_picture(&avcc(&[&[0x41, 0x02, 0x00]])));
        assert!(starts_picture(&avcc(&[sps])), "no slice: nothing to say");
    }

    #[test]
    fn parses_a_baseline_sps() {
        // libx264 baseline 640x480, level 3.0 (profile-level-id 42c01e).
        let sps = hex("6742c01ed900a03db0110000030001000003003c0f162e48");
        let info = parse_sps(&sps).unwrap();
        assert_eq!((info.width, info.height), (640, 480));
        assert_eq!(info.codec_string(), "avc1.42c01e");
    }

    #[test]
    fn parses_a_high_profile_sps_with_cropping() {
        // libx264 high 320x180 (1088-style cropping of the last macroblock row).
        let sps = hex("6764000dacd941419f9f0110000003001000000303c0f1429960");
        let info = parse_sps(&sps).unwrap();
        assert_eq!((info.width, info.height), (320, 180));
        assert_eq!(info.codec_string(), "avc1.64000d");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn splits_avcc() {
        let au = [0, 0, 0, 2, 0x67, 1, 0, 0, 0, 1, 0x65, 0, 0, 0, 9];
        let nalus: Vec<_> = avcc_nalus(&au).collect();
        assert_eq!(nalus, [&[0x67, 1][..], &[0x65][..]]);
    }
}
