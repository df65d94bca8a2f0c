//! Which of a simulcast publisher's video layers the recorder writes, sans I/O.
//!
//! A browser ramps its layers up from the smallest: the full-size one sends its first keyframe
//! seconds after the smallest (measured in Chromium: 3.8 s). Recording only the top layer lost
//! the picture of those first seconds (and again after each reconnect), so the recorder
//! follows the best layer that sends: it starts with the top layer if that sends a keyframe
//! within [`START_WAIT`] of the first video packet (else with whichever layer's keyframe comes
//! next), moves up at a better layer's keyframe, and moves down only when its layer falls
//! silent (the expert's browser drops its top layers when its own uplink is short). Every move
//! happens at a keyframe of the layer moved to, so the recording has no broken frame. Each move
//! of an H.264 recording starts a new part (the size is in its init segment), hence the wait
//! for the top layer at the start: the relay asks the browser to start at a bitrate that
//! carries all its layers, so usually the top one comes at once and a recording is one part.

use std::time::{Duration, Instant};

/// Least time on one layer before moving up again: the ramp's layers start about a second
/// apart, and a layer that flickers on and off should not cut the recording each time.
const SETTLE: Duration = Duration::from_secs(1);
/// A layer with no packet for this long is silent.
const SILENT: Duration = Duration::from_secs(1);
/// The recorded layer is given up after this long without a frame written from it: a browser
/// short of bandwidth or CPU pauses its top layer, and a paused layer may still send packets
/// (padding for probing) while it answers no keyframe request.
const STALLED: Duration = Duration::from_millis(1500);
/// How long a new publisher's top layer is waited for before recording a smaller one. The
/// audio is held meanwhile (the segmenter keeps what comes before the first keyframe).
const START_WAIT: Duration = Duration::from_millis(1500);

/// One video packet as the recorder sees it: its layer and whether a keyframe starts here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerPacket {
    /// The layer's source id (the room's name for it; keyframe requests use it).
    pub source: u64,
    /// Its place in the publisher's offer, 0 the smallest.
    pub rank: usize,
    /// How many layers the publisher announced.
    pub layers: usize,
    pub keyframe: bool,
}

/// What to do with a video packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Of the layer being recorded.
    Record,
    /// A keyframe of the layer to record from now on: start its timeline with this packet.
    Switch,
    /// Of another layer.
    Skip,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    source: u64,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    rank: usize,
    since: Instant,
    /// The last frame written from it (or the move to it).
    last_frame: Instant,
}

/// One span's (one publisher's) choice of layer.
#[derive(Debug, Default)]
pub(crate) struct LayerFollow {
    current: Option<Current>,
    /// The first video packet of any layer, and the top layer's rank.
    first: Option<(Instant, usize)>,
    /// By rank: each layer's source and its last packet.
    seen: Vec<Option<Seen>>,
}

impl LayerFollow {
    pub(crate) fn packet(&mut self, packet: LayerPacket, at: Instant) -> Verdict {
        if self.seen.len() <= packet.rank {
            self.seen.resize(packet.rank + 1, None);
        }
        let (first, top) = *self
            .first
            .get_or_insert((at, packet.layers.saturating_sub(1)));
        let stalled = self.current.is_some_and(|c| Self::is_stalled(c, at));
        self.seen[packet.rank] = Some(Seen {
            source: packet.source,
            last: at,
        });
        let switch = match self.current {
            None => {
                packet.keyframe
                    && (packet.rank >= top || at.saturating_duration_since(first) >= START_WAIT)
            }
            Some(current) if current.rank == packet.rank => return Verdict::Record,
            Some(current) => {
                packet.keyframe
                    && ((packet.rank > current.rank
                        && at.saturating_duration_since(current.since) >= SETTLE)
                        || stalled)
            }
        };
        if !switch {
            return Verdict::Skip;
        }
        self.current = Some(Current {
            rank: packet.rank,
            since: at,
            last_frame: at,
        });
        Verdict::Switch
    }

    /// A frame of the recorded layer was written at `at`.
    pub(crate) fn wrote_frame(&mut self, at: Instant) {
        if let Some(current) = self.current.as_mut() {
            current.last_frame = current.last_frame.max(at);
        }
    }

    fn is_stalled(current: Current, now: Instant) -> bool {
        now.saturating_duration_since(current.last_frame) >= STALLED
    }

    /// The layer whose keyframe the recorder waits for, to move to it: the best sending layer
    /// above the current one once settled, or when the current one fell silent the best that
    /// still sends.
    pub(crate) fn wanted(&self, now: Instant) -> Option<u64> {
        let sending = |skip: Option<usize>| {
            self.seen
                .iter()
                .enumerate()
                .rev()
                .filter(|(rank, _)| Some(*rank) != skip && !self.is_silent(*rank, now))
                .find_map(|(rank, seen)| Some((rank, seen.as_ref()?.source)))
        };
        let Some(current) = self.current else {
            // Nothing recorded yet: the top layer, or after the wait the best one sending.
            let best = sending(None)?;
            let (first, top) = self.first?;
            let waited = now.saturating_duration_since(first) >= START_WAIT;
            return (best.0 >= top || waited).then_some(best.1);
        };
        if Self::is_stalled(current, now) {
            // the best other layer that sends (none: the recorded one is asked again)
            return sending(Some(current.rank)).map(|(_, source)| source);
        }
        let best = sending(None)?;
        let settled = now.saturating_duration_since(current.since) >= SETTLE;
        (best.0 > current.rank && settled).then_some(best.1)
    }

    /// The source of the layer being recorded.
    pub(crate) fn current(&self) -> Option<u64> {
        let current = self.current?;
        self.seen.get(current.rank)?.map(|s| s.source)
    }

    /// The smallest layer that sent anything: asked for a keyframe before one came.
    pub(crate) fn first_seen(&self) -> Option<u64> {
        self.seen.iter().flatten().next().map(|s| s.source)
    }

    fn is_silent(&self, rank: usize, now: Instant) -> bool {
        self.seen
            .get(rank)
            .copied()
            .flatten()
            .is_none_or(|s| now.saturating_duration_since(s.last) >= SILENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(rank: usize, keyframe: bool) -> LayerPacket {
        LayerPacket {
            source: 100 + rank as u64,
            rank,
            layers: 3,
            keyframe,
        }
    }

    #[test]
    fn starts_on_the_top_layer_when_it_comes_within_the_wait() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut follow = LayerFollow::default();
        assert_eq!(follow.packet(packet(0, true), ms(0)), Verdict::Skip);
        assert_eq!(follow.packet(packet(1, true), ms(30)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(40)), None);
        // the top layer's delta frames before its keyframe are no start; its keyframe is asked for
        assert_eq!(follow.packet(packet(2, false), ms(60)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(60)), Some(102));
        assert_eq!(follow.packet(packet(2, true), ms(90)), Verdict::Switch);
        assert_eq!(follow.current(), Some(102));
        assert_eq!(follow.packet(packet(0, true), ms(100)), Verdict::Skip);
        assert_eq!(follow.packet(packet(2, false), ms(120)), Verdict::Record);
        assert_eq!(follow.wanted(ms(120)), None);
    }

    #[test]
    fn a_late_top_layer_is_moved_up_to_after_a_smaller_start() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut follow = LayerFollow::default();
        assert_eq!(follow.packet(packet(0, true), ms(0)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(1000)), None);
        // the wait is over: the best layer sending is asked for and taken at its keyframe
        assert_eq!(follow.packet(packet(0, false), ms(1400)), Verdict::Skip);
        assert_eq!(follow.packet(packet(1, false), ms(1500)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(1500)), Some(101));
        assert_eq!(follow.packet(packet(0, true), ms(1510)), Verdict::Switch);
        assert_eq!(follow.packet(packet(0, false), ms(1540)), Verdict::Record);
        // the middle layer's keyframe comes too soon after that start: not yet
        assert_eq!(follow.packet(packet(1, true), ms(2000)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(2100)), None);
        // settled: the middle layer is asked for and taken at its next keyframe
        assert_eq!(follow.packet(packet(1, false), ms(2600)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(2600)), Some(101));
        assert_eq!(follow.packet(packet(1, true), ms(2700)), Verdict::Switch);
        assert_eq!(follow.current(), Some(101));
        // the top layer, late, is taken at its first keyframe
        assert_eq!(follow.packet(packet(2, true), ms(3800)), Verdict::Switch);
        assert_eq!(follow.packet(packet(1, true), ms(3900)), Verdict::Skip);
        assert_eq!(follow.packet(packet(2, false), ms(3930)), Verdict::Record);
        assert_eq!(follow.wanted(ms(3930)), None);
    }

    #[test]
    fn moves_down_only_when_its_layer_stalls() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut follow = LayerFollow::default();
        assert_eq!(follow.packet(packet(2, true), ms(0)), Verdict::Switch);
        assert_eq!(follow.packet(packet(1, true), ms(500)), Verdict::Skip);
        assert_eq!(follow.packet(packet(2, false), ms(900)), Verdict::Record);
        follow.wrote_frame(ms(900));
        // a smaller layer's keyframe while the top one still gives frames: kept on top
        assert_eq!(follow.packet(packet(1, true), ms(1800)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(1850)), None);
        // the top layer still sends packets but no frame for 1.5 s (paused, or waiting for a
        // keyframe it never sends): the best other layer sending is wanted, and taken
        assert_eq!(follow.packet(packet(2, false), ms(2300)), Verdict::Record);
        assert_eq!(follow.packet(packet(0, false), ms(2350)), Verdict::Skip);
        assert_eq!(follow.packet(packet(1, false), ms(2400)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(2400)), Some(101));
        assert_eq!(follow.packet(packet(1, true), ms(2450)), Verdict::Switch);
        assert_eq!(follow.current(), Some(101));
        follow.wrote_frame(ms(2500));
        // and back up once the top layer sends again, at its keyframe
        assert_eq!(follow.packet(packet(2, false), ms(3500)), Verdict::Skip);
        assert_eq!(follow.wanted(ms(3500)), Some(102));
        assert_eq!(follow.packet(packet(2, true), ms(3600)), Verdict::Switch);
    }

    #[test]
    fn a_single_layer_is_recorded_from_its_first_keyframe() {
        let t0 = Instant::now();
        let one = |keyframe| LayerPacket {
            source: 7,
            rank: 0,
            layers: 1,
            keyframe,
        };
        let mut follow = LayerFollow::default();
        assert_eq!(follow.packet(one(false), t0), Verdict::Skip);
        assert_eq!(follow.wanted(t0), Some(7));
        assert_eq!(follow.packet(one(true), t0), Verdict::Switch);
        for n in 1..100 {
            let at = t0 + Duration::from_millis(n * 33);
            assert_eq!(follow.packet(one(n % 30 == 0), at), Verdict::Record);
            assert_eq!(follow.wanted(at), None);
        }
    }
}
