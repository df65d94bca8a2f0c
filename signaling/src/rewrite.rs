//! Sequence number and timestamp continuity across publishers.
//!
//! Viewers keep one outgoing stream (one SSRC) per kind for the life of the
//! room, while publishers come and go, each with its own random sequence
//! numbers and timestamps. Forwarding them unchanged would make the viewer's
//! SRTP rollover guess and jitter buffer see a jump of up to 2^15 packets and
//! drop the new publisher's media. So each room stream keeps an offset that is
//! re-based whenever a new publisher (a new generation) starts sending.

use std::time::Instant;

use webrtc::rtp::header::Header;

#[derive(Debug)]
pub(crate) struct StreamRewriter {
    clock_rate: u32,
    generation: Option<u64>,
    seq_offset: u16,
    ts_offset: u32,
    /// The newest packet sent so far, in outgoing numbering.
    last_out: Option<(u16, u32, Instant)>,
}

impl StreamRewriter {
    pub(crate) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            generation: None,
            seq_offset: 0,
            ts_offset: 0,
            last_out: None,
        }
    }

    /// Rewrites `header` in place for the publisher of `generation`.
    pub(crate) fn rewrite(&mut self, header: &mut Header, generation: u64, now: Instant) {
        if self.generation != Some(generation) {
            self.rebase(header, generation, now);
        }
        header.sequence_number = header.sequence_number.wrapping_add(self.seq_offset);
        header.timestamp = header.timestamp.wrapping_add(self.ts_offset);
        let newer = match self.last_out {
            None => true,
            Some((seq, _, _)) => is_newer(header.sequence_number, seq),
        };
        if newer {
            self.last_out = Some((header.sequence_number, header.timestamp, now));
        }
    }

    fn rebase(&mut self, first: &Header, generation: u64, now: Instant) {
        self.generation = Some(generation);
        let Some((last_seq, last_ts, last_at)) = self.last_out else {
            // The room's first publisher: pass its numbering through.
            self.seq_offset = 0;
            self.ts_offset = 0;
            return;
        };
        let next_seq = last_seq.wrapping_add(1);
        self.seq_offset = next_seq.wrapping_sub(first.sequence_number);
        // Advance the timestamp by the wall-clock gap, so the receiver's
        // jitter buffer sees the pause as a pause and not as a burst.
        let gap = now.saturating_duration_since(last_at).as_secs_f64();
        let ticks = ((gap * f64::from(self.clock_rate)) as u64).clamp(1, u64::from(u32::MAX / 2));
        let next_ts = last_ts.wrapping_add(ticks as u32);
        self.ts_offset = next_ts.wrapping_sub(first.timestamp);
    }
}

/// RFC 1982 serial number comparison for 16-bit sequence numbers.
pub(crate) fn is_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn header(seq: u16, ts: u32) -> Header {
        Header {
            sequence_number: seq,
            timestamp: ts,
            ..Header::default()
        }
    }

    #[test]
    fn first_publisher_passes_through_and_second_continues() {
        let mut rw = StreamRewriter::new(90_000);
        let t0 = Instant::now();
        let mut h = header(65_535, 1000);
        rw.rewrite(&mut h, 1, t0);
        assert_eq!((h.sequence_number, h.timestamp), (65_535, 1000));
        let mut h = header(0, 4000);
        rw.rewrite(&mut h, 1, t0);
        assert_eq!((h.sequence_number, h.timestamp), (0, 4000));

        let mut h = header(30_000, 7);
        rw.rewrite(&mut h, 2, t0 + Duration::from_secs(1));
        assert_eq!(h.sequence_number, 1);
        assert_eq!(h.timestamp, 4000 + 90_000);
        let mut h = header(30_001, 3007);
        rw.rewrite(&mut h, 2, t0 + Duration::from_secs(1));
        assert_eq!((h.sequence_number, h.timestamp), (2, 4000 + 93_000));
    }

    #[test]
    fn late_packets_do_not_move_the_base() {
        let mut rw = StreamRewriter::new(48_000);
        let t0 = Instant::now();
        for seq in [10u16, 12, 11] {
            let mut h = header(seq, u32::from(seq) * 960);
            rw.rewrite(&mut h, 1, t0);
        }
        let mut h = header(500, 0);
        rw.rewrite(&mut h, 2, t0);
        assert_eq!(h.sequence_number, 13);
    }
}
