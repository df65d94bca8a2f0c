//! From RTP packets to access units, for the recorder: reorder by sequence
//! number, wait a little for late packets, assemble frames (same timestamp,
//! up to the marker bit), depacketize them with the `rtp` crate's H.264 and
//! VP8 depacketizers, and drop what loss made undecodable.
//!
//! Not `webrtc-media`'s `SampleBuilder`: it keeps two 65 536-entry tables
//! per track (megabytes per broadcast) and hands on frames with holes, which
//! a decoder shows as corrupt until the next keyframe. Here a frame with a
//! lost packet is dropped, and so is every video frame after it until a
//! keyframe (which the recorder asks for).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use webrtc::rtp::codecs::h264::H264Packet;
use webrtc::rtp::codecs::vp8::Vp8Packet;
use webrtc::rtp::packetizer::Depacketizer as _;

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    H264,
    Vp8,
    Opus,
}

/// One frame: the extended RTP timestamp, the bytes (H.264 as AVCC).
#[derive(Debug, Clone)]
pub(crate) struct AccessUnit {
    pub ts: u64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// How long a hole in the sequence is waited for (the NACK round trip of
/// the interceptors normally fills it well within this).
const MAX_WAIT: Duration = Duration::from_millis(300);
/// Packets buffered past a hole before it is given up on, whatever the time.
const MAX_AHEAD: u64 = 512;

struct Buffered {
    ts: u64,
    marker: bool,
    payload: Bytes,
    at: Instant,
}

pub(crate) struct Depacketizer {
    payload: Payload,
    /// Extended sequence number of the newest packet, for unwrapping.
    newest: Option<u64>,
    /// The next packet to hand on.
    next: Option<u64>,
    buffer: BTreeMap<u64, Buffered>,
    /// Data was lost since the last keyframe: video frames are dropped
    /// until the next one.
    broken: bool,
    /// Whether any packet was consumed: until then a packet older than the
    /// first one to arrive (reordered start) moves the start back.
    started: bool,
}

impl Depacketizer {
    pub(crate) fn new(payload: Payload) -> Self {
        Self {
            payload,
            newest: None,
            next: None,
            buffer: BTreeMap::new(),
            broken: payload != Payload::Opus,
            started: false,
        }
    }

    /// Whether video is waiting for a keyframe after loss (or at the start).
    pub(crate) fn waiting_for_keyframe(&self) -> bool {
        self.broken
    }

    fn extend_seq(&mut self, seq: u16) -> u64 {
        let ext = match self.newest {
            None => (1 << 16) + u64::from(seq),
            Some(newest) => {
                let delta = i64::from(seq.wrapping_sub(newest as u16) as i16);
                (newest as i64 + delta).max(0) as u64
            }
        };
        if self.newest.is_none_or(|n| ext > n) {
            self.newest = Some(ext);
        }
        ext
    }

    /// Takes one packet (`ts` already extended to 64 bits); returns the
    /// frames it completed, in order.
    pub(crate) fn push(
        &mut self,
        seq: u16,
        ts: u64,
        marker: bool,
        payload: Bytes,
        now: Instant,
    ) -> Vec<AccessUnit> {
        let ext = self.extend_seq(seq);
        let next = *self.next.get_or_insert(ext);
        if ext < next {
            if self.started {
                // A late duplicate (a retransmission of what already came).
                return Vec::new();
            }
            self.next = Some(ext);
        }
        self.buffer.entry(ext).or_insert(Buffered {
            ts,
            marker,
            payload,
            at: now,
        });
        self.drain(now, false)
    }

    /// Everything still buffered that forms complete frames (the stream ended).
    pub(crate) fn finish(&mut self) -> Vec<AccessUnit> {
        self.drain(Instant::now(), true)
    }

    fn drain(&mut self, now: Instant, finishing: bool) -> Vec<AccessUnit> {
        let before = self.next;
        let out = self.drain_ready(now, finishing);
        self.started |= self.next != before;
        out
    }

    fn drain_ready(&mut self, now: Instant, finishing: bool) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        while let Some(next) = self.next {
            let Some((&first, oldest)) = self.buffer.first_key_value() else {
                break;
            };
            let give_up = finishing
                || now.saturating_duration_since(oldest.at) > MAX_WAIT
                || self.newest.unwrap_or(0).saturating_sub(next) > MAX_AHEAD;
            if first != next {
                if !give_up {
                    break;
                }
                // The packets in between are lost.
                self.broken |= self.payload != Payload::Opus;
                self.next = Some(first);
                continue;
            }
            if self.payload == Payload::Opus {
                let packet = self.buffer.remove(&next).expect("first key");
                self.next = Some(next + 1);
                if !packet.payload.is_empty() {
                    out.push(AccessUnit {
                        ts: packet.ts,
                        keyframe: true,
                        data: packet.payload,
                    });
                }
                continue;
            }
            // A video frame: consecutive packets of one timestamp up to the marker.
            let ts = self.buffer[&next].ts;
            let mut end = next;
            let complete = loop {
                match self.buffer.get(&end) {
                    Some(p) if p.ts == ts && p.marker => break Some(end + 1),
                    Some(p) if p.ts == ts => end += 1,
                    // The next frame began: this one had no marker (lost or not set).
                    Some(_) => break Some(end),
                    None if finishing => break Some(end),
                    None => break None,
                }
            };
            let Some(after) = complete else {
                if !give_up {
                    break;
                }
                // Its tail is lost: drop what came of it.
                for seq in next..end {
                    self.buffer.remove(&seq);
                }
                self.broken = true;
                self.next = self.buffer.first_key_value().map(|(k, _)| *k).or(Some(end));
                continue;
            };
            let payloads: Vec<Bytes> = (next..after)
                .filter_map(|seq| self.buffer.remove(&seq))
                .map(|p| p.payload)
                .filter(|p| !p.is_empty())
                .collect();
            self.next = Some(after);
            if payloads.is_empty() {
                continue; // padding only
            }
            match self.frame(ts, &payloads) {
                Some(unit) if unit.keyframe => {
                    self.broken = false;
                    out.push(unit);
                }
                Some(unit) if !self.broken => out.push(unit),
                Some(_) => {}
                None => self.broken = true,
            }
        }
        out
    }

    /// Depacketizes one frame's payloads; `None` if they do not form one.
    fn frame(&self, ts: u64, payloads: &[Bytes]) -> Option<AccessUnit> {
        let mut data = BytesMut::new();
        match self.payload {
            Payload::H264 => {
                let mut depacketizer = H264Packet::default();
                depacketizer.is_avc = true;
                if !depacketizer.is_partition_head(&payloads[0]) {
                    return None;
                }
                for payload in payloads {
                    data.extend_from_slice(&depacketizer.depacketize(payload).ok()?);
                }
                // Its packets are consecutive up to the marker, but a hole just before them may
                // have taken its first slices.
                if !oncolive_media::h264::starts_picture(&data) {
                    return None;
                }
                let keyframe = oncolive_media::h264::avcc_nalus(&data)
                    .any(|n| oncolive_media::h264::nal_type(n) == oncolive_media::h264::NAL_IDR);
                Some(AccessUnit {
                    ts,
                    keyframe,
                    data: data.freeze(),
                })
            }
            Payload::Vp8 => {
                let mut depacketizer = Vp8Packet::default();
                if !depacketizer.is_partition_head(&payloads[0]) {
                    return None;
                }
                for payload in payloads {
                    data.extend_from_slice(&depacketizer.depacketize(payload).ok()?);
                }
                let keyframe = oncolive_media::webm::vp8_is_keyframe(&data);
                Some(AccessUnit {
                    ts,
                    keyframe,
                    data: data.freeze(),
                })
            }
            Payload::Opus => None,
        }
    }
}

/// Extends 32-bit RTP timestamps to 64 bits (a 90 kHz clock wraps in 13 h,
/// and starts anywhere).
#[derive(Debug, Default)]
pub(crate) struct TimestampUnwrapper {
    last: Option<u64>,
}

impl TimestampUnwrapper {
    pub(crate) fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => (1 << 32) + u64::from(ts),
            Some(last) => {
                let delta = i64::from(ts.wrapping_sub(last as u32) as i32);
                (last as i64 + delta).max(0) as u64
            }
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp8(start: bool, key: bool) -> Bytes {
        // Payload descriptor (S bit), then a frame byte with the key frame bit.
        let descriptor = if start { 0x10 } else { 0x00 };
        Bytes::from(vec![descriptor, if key { 0x00 } else { 0x01 }, 0xaa, 0xbb])
    }

    #[test]
    fn reorders_and_drops_broken_frames_until_a_keyframe() {
        let t = Instant::now();
        let mut d = Depacketizer::new(Payload::Vp8);
        // A lone delta frame first (dropped: no keyframe yet), then a keyframe in two
        // packets, arriving swapped.
        assert!(d.push(9, 50, true, vp8(true, false), t).is_empty());
        assert!(d.push(11, 100, true, vp8(false, false), t).is_empty());
        let units = d.push(10, 100, false, vp8(true, true), t);
        assert_eq!(units.len(), 1);
        assert!(units[0].keyframe);
        // Frame 200 loses its first packet (seq 12); frame 300 is whole.
        d.push(13, 200, true, vp8(false, false), t);
        assert!(d.push(14, 300, true, vp8(true, false), t).is_empty());
        // After the wait, 200 is given up and 300 is dropped too (no keyframe since).
        let later = t + MAX_WAIT * 2;
        assert!(d.push(15, 400, true, vp8(true, false), later).is_empty());
        assert!(d.waiting_for_keyframe());
        let units = d.push(16, 500, true, vp8(true, true), later);
        assert_eq!(units.iter().map(|u| u.ts).collect::<Vec<_>>(), [500]);
        assert!(!d.waiting_for_keyframe());
    }

    #[test]
    fn an_h264_keyframe_that_lost_its_first_slice_is_not_taken_for_one() {
        let t = Instant::now();
        let mut d = Depacketizer::new(Payload::H264);
        // One picture in two IDR slices, one packet each (single NAL units, as libx264 with
        // sliced threads sends them): first_mb_in_slice 0, then 40.
        let first = Bytes::from_static(&[0x65, 0x88, 0x84, 0x00]);
        let second = Bytes::from_static(&[0x65, 0x05, 0x20, 0x00]);
        let delta = Bytes::from_static(&[0x41, 0x9a, 0x00]);
        // The first slice (seq 10) is lost: after the wait the rest is no keyframe, and the
        // delta frame after it is dropped too.
        assert!(d.push(11, 100, true, second.clone(), t).is_empty());
        let later = t + MAX_WAIT * 2;
        assert!(d.push(12, 200, true, delta.clone(), later).is_empty());
        assert!(d.waiting_for_keyframe());
        // The next picture comes whole.
        assert!(d.push(13, 300, false, first, later).is_empty());
        let units = d.push(14, 300, true, second, later);
        assert_eq!(units.len(), 1);
        assert!(units[0].keyframe);
        assert_eq!(d.push(15, 400, true, delta, later).len(), 1);
    }

    #[test]
    fn opus_packets_are_frames_and_sequence_numbers_wrap() {
        let t = Instant::now();
        let mut d = Depacketizer::new(Payload::Opus);
        let mut got = Vec::new();
        for (seq, ts) in [(65_534u16, 0u64), (0, 1920), (65_535, 960), (1, 2880)] {
            got.extend(d.push(seq, ts, false, Bytes::from_static(&[0xfc]), t));
        }
        assert_eq!(
            got.iter().map(|u| u.ts).collect::<Vec<_>>(),
            [0, 960, 1920, 2880]
        );
        let mut ts = TimestampUnwrapper::default();
        let a = ts.extend(u32::MAX - 10);
        let b = ts.extend(5);
        assert_eq!(b - a, 16);
    }
}
