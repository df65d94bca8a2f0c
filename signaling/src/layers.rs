//! Simulcast on the relay's side: the video layers of the room's publisher, and each viewer's
//! selection among them.
//!
//! A publisher sends one layer (OBS, an edge's pull, a browser without simulcast) or several of
//! the same picture at different sizes, each its own RTP stream named by a `rid`. Every layer
//! gets a source id, unique in the process; a viewer's [`Selection`] names the source it is
//! forwarded now and the one it should move to, and moves at the target's next keyframe, so
//! the picture changes size without a freeze. Each selection has its own rewriter: the viewer
//! keeps one SSRC whose sequence numbers and timestamps run on across layers and publishers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use webrtc::rtp::header::Header;

use crate::keyframe::KeyframeGate;
use crate::layer_choice::{Chooser, LayerView, Preference};
use crate::rewrite::{StreamRewriter, is_newer};

/// A layer whose last packet is older than this is not offered to viewers (the expert's
/// browser stops sending its top layers when its own uplink is short).
const ACTIVE_FOR: Duration = Duration::from_secs(2);
/// Bitrates are measured over windows of this length.
const METER_WINDOW: Duration = Duration::from_secs(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a few assignments; a panic leaves them consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new source id (never 0, never reused in this process).
fn next_source() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One RTP stream of the publisher's video.
pub(crate) struct Layer {
    pub source: u64,
    /// The offer's `rid` ("" for a publisher without simulcast).
    pub rid: String,
    /// The layer's SSRC, once its first packet arrived (0 before): PLIs name it.
    pub ssrc: AtomicU32,
    /// Keyframe requests toward this layer, coalesced (each layer has its own encoder).
    pub keyframes: KeyframeGate,
    meter: Mutex<Meter>,
}

#[derive(Debug, Default)]
struct Meter {
    window_start: Option<Instant>,
    window_bytes: u64,
    bitrate_bps: u64,
    last_packet: Option<Instant>,
}

impl Layer {
    /// Counts one packet of `bytes` arriving at `now` (called by the layer's forwarding loop).
    pub(crate) fn count(&self, bytes: usize, now: Instant) {
        let mut meter = lock(&self.meter);
        meter.last_packet = Some(now);
        let start = *meter.window_start.get_or_insert(now);
        meter.window_bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= METER_WINDOW {
            meter.bitrate_bps = meter.window_bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            meter.window_start = Some(now);
            meter.window_bytes = 0;
        }
    }

    fn reading(&self, now: Instant) -> (u64, bool) {
        let meter = lock(&self.meter);
        let active = meter
            .last_packet
            .is_some_and(|at| now.saturating_duration_since(at) < ACTIVE_FOR);
        (meter.bitrate_bps, active)
    }
}

/// The layers of one publisher, in the offer's order.
pub(crate) struct Layers {
    pub layers: Vec<Arc<Layer>>,
}

impl Layers {
    /// The layers a publisher announced: its `rid`s, or one layer without a `rid`.
    pub(crate) fn new(rids: &[String], keyframe_min_interval: Duration) -> Arc<Layers> {
        let one = [String::new()];
        let rids = if rids.is_empty() { &one[..] } else { rids };
        Arc::new(Layers {
            layers: rids
                .iter()
                .map(|rid| {
                    Arc::new(Layer {
                        source: next_source(),
                        rid: rid.clone(),
                        ssrc: AtomicU32::new(0),
                        keyframes: KeyframeGate::new(keyframe_min_interval),
                        meter: Mutex::default(),
                    })
                })
                .collect(),
        })
    }

    pub(crate) fn by_rid(&self, rid: &str) -> Option<&Arc<Layer>> {
        self.layers
            .iter()
            .find(|l| l.rid == rid)
            .or_else(|| (self.layers.len() == 1).then(|| &self.layers[0]))
    }

    pub(crate) fn by_source(&self, source: u64) -> Option<&Arc<Layer>> {
        self.layers.iter().find(|l| l.source == source)
    }

    /// The layer recorded and pulled by default: the last one the publisher announced (a
    /// browser lists its encodings from the smallest; ours does).
    pub(crate) fn top(&self) -> &Arc<Layer> {
        // `new` always makes at least one layer.
        &self.layers[self.layers.len() - 1]
    }

    /// The layers sending now, in the offer's order: smallest first, as browsers list their
    /// encodings (ours does). Not by measured bitrate: a browser ramps its layers up from its
    /// smallest, so for seconds the full-size layer is the lightest (measured in Chromium:
    /// 16, 113 and 286 kbit/s for its 1280, 320 and 640 pixel wide layers).
    pub(crate) fn active(&self, now: Instant) -> Vec<LayerView> {
        let views: Vec<LayerView> = self
            .layers
            .iter()
            .filter_map(|l| {
                let (bitrate_bps, active) = l.reading(now);
                active.then_some(LayerView {
                    source: l.source,
                    bitrate_bps,
                })
            })
            .collect();
        if views.is_empty() {
            // Nothing sends yet (a new publisher) or any more: the announced layers, so a
            // viewer has a target when the first packets come.
            return self
                .layers
                .iter()
                .map(|l| LayerView {
                    source: l.source,
                    bitrate_bps: 0,
                })
                .collect();
        }
        views
    }

    /// What a client is told about the layers.
    pub(crate) fn describe(&self, now: Instant) -> Vec<LayerInfo> {
        self.active(now)
            .iter()
            .filter_map(|v| self.by_source(v.source))
            .map(|l| LayerInfo {
                rid: l.rid.clone(),
                bitrate_bps: l.reading(now).0,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// The publisher's name for the layer (`""` without simulcast).
    pub rid: String,
    pub bitrate_bps: u64,
}

/// What `GET`/`POST …/layer` answers: the viewer's choice and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct LayerState {
    pub prefer: Preference,
    /// The layer forwarded now (`null` before the first keyframe).
    pub current: Option<String>,
    /// The layer the viewer moves to at its next keyframe (the same as `current` when settled).
    pub target: Option<String>,
    /// The layers sending now, lowest first.
    pub layers: Vec<LayerInfo>,
}

/// One viewer's video: which source it gets, and its own numbering.
pub(crate) struct Selection {
    forwarding: Mutex<Forwarding>,
    chooser: Mutex<Chooser>,
}

/// Packets of the new source older than its first forwarded one are dropped for this many
/// packets after a switch (late packets of the new source would reuse sequence numbers already
/// sent for the old one).
const FLOOR_FOR: u32 = 512;

#[derive(Debug)]
struct Forwarding {
    target: Option<u64>,
    current: Option<u64>,
    rewriter: StreamRewriter,
    /// The first sequence number (as sent by the publisher) of the current source, and how
    /// many more packets to check against it.
    floor: Option<(u16, u32)>,
}

impl Selection {
    fn new() -> Selection {
        Selection {
            forwarding: Mutex::new(Forwarding {
                target: None,
                current: None,
                rewriter: StreamRewriter::new(90_000),
                floor: None,
            }),
            chooser: Mutex::default(),
        }
    }

    /// Whether a packet of `source` goes to this viewer; if so `header` is rewritten into the
    /// viewer's numbering. `keyframe`: the packet starts a keyframe (a switch may happen here).
    pub(crate) fn admit(
        &self,
        header: &mut Header,
        source: u64,
        keyframe: bool,
        now: Instant,
    ) -> bool {
        let mut f = lock(&self.forwarding);
        if f.current != Some(source) {
            // Only a keyframe of the target starts a source: the viewer's decoder needs one.
            if f.target != Some(source) || !keyframe {
                return false;
            }
            f.current = Some(source);
            f.floor = Some((header.sequence_number, FLOOR_FOR));
        } else if let Some((first, left)) = f.floor {
            if header.sequence_number != first && !is_newer(header.sequence_number, first) {
                return false;
            }
            f.floor = (left > 1).then_some((first, left - 1));
        }
        f.rewriter.rewrite(header, source, now);
        true
    }

    /// Sets the target; returns whether the viewer now waits for a keyframe of it.
    fn set_target(&self, target: u64) -> bool {
        let mut f = lock(&self.forwarding);
        f.target = Some(target);
        f.current != Some(target)
    }

    /// The source forwarded now.
    pub(crate) fn current(&self) -> Option<u64> {
        self.sources().0
    }

    /// The source the viewer gets or waits for.
    pub(crate) fn target(&self) -> Option<u64> {
        self.sources().1
    }

    fn sources(&self) -> (Option<u64>, Option<u64>) {
        let f = lock(&self.forwarding);
        (f.current, f.target)
    }

    /// Decides this viewer's layer among `layers`; returns the target when the viewer must
    /// wait for a keyframe of it (the caller asks the publisher for one).
    pub(crate) fn decide(&self, layers: &Layers, now: Instant) -> Option<u64> {
        let views = layers.active(now);
        let target = lock(&self.chooser).choose(&views, now)?;
        self.set_target(target).then_some(target)
    }

    /// A receiver report (RFC 3550 `fraction_lost`) for this viewer's video.
    pub(crate) fn report(&self, fraction_lost: u8, layers: &Layers, now: Instant) {
        let views = layers.active(now);
        lock(&self.chooser).on_report(fraction_lost, &views, now);
    }

    pub(crate) fn remb(&self, bitrate_bps: u64) {
        lock(&self.chooser).on_remb(bitrate_bps);
    }

    pub(crate) fn set_preference(&self, preference: Preference) {
        lock(&self.chooser).set_preference(preference);
    }

    /// Carries the viewer's position over to a new publisher's layers: the same rank, so an
    /// expert who reconnects does not drop every viewer to the lowest layer.
    pub(crate) fn carry_over(&self, old: &Layers, new: &Layers) {
        let (_, target) = self.sources();
        // Counted from the top, in the offers' order (the new layers have no bitrates yet).
        let from_top = target
            .and_then(|t| old.layers.iter().position(|l| l.source == t))
            .map(|i| old.layers.len() - 1 - i);
        let source = match from_top {
            Some(from_top) => new.layers[new.layers.len().saturating_sub(1 + from_top)].source,
            None => new.layers[0].source,
        };
        lock(&self.chooser).carry_over(source);
        self.set_target(source);
    }

    pub(crate) fn state(&self, layers: &Layers, now: Instant) -> LayerState {
        let (current, target) = self.sources();
        let rid = |source: Option<u64>| {
            source
                .and_then(|s| layers.by_source(s))
                .map(|l| l.rid.clone())
        };
        LayerState {
            prefer: lock(&self.chooser).preference(),
            current: rid(current),
            target: rid(target),
            layers: layers.describe(now),
        }
    }
}

/// The room's viewers' selections, by the SSRC of their video sender (stable across the track
/// swaps a codec change makes, unlike the binding itself).
#[derive(Default)]
pub(crate) struct Selections {
    by_ssrc: RwLock<HashMap<u32, Arc<Selection>>>,
}

impl Selections {
    pub(crate) fn get_or_create(&self, ssrc: u32) -> Arc<Selection> {
        if let Some(found) = self
            .by_ssrc
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ssrc)
        {
            return found.clone();
        }
        self.by_ssrc
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ssrc)
            .or_insert_with(|| Arc::new(Selection::new()))
            .clone()
    }

    pub(crate) fn remove(&self, ssrc: u32) {
        self.by_ssrc
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ssrc);
    }

    pub(crate) fn all(&self) -> Vec<Arc<Selection>> {
        self.by_ssrc
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32) -> Header {
        Header {
            sequence_number: seq,
            timestamp: ts,
            ..Header::default()
        }
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_and_numbering_runs_on() {
        let t0 = Instant::now();
        let selection = Selection::new();
        assert!(selection.set_target(1));
        let mut h = header(100, 9000);
        assert!(!selection.admit(&mut h, 1, false, t0), "no keyframe yet");
        let mut h = header(101, 9000);
        assert!(selection.admit(&mut h, 1, true, t0));
        let mut h = header(102, 12_000);
        assert!(selection.admit(&mut h, 1, false, t0));
        let last = h.sequence_number;
        let mut other = header(5000, 777);
        assert!(!selection.admit(&mut other, 2, true, t0), "not the target");

        assert!(selection.set_target(2));
        let mut h = header(5001, 800);
        assert!(
            !selection.admit(&mut h, 2, false, t0),
            "waits for a keyframe"
        );
        let mut h = header(103, 15_000);
        assert!(
            selection.admit(&mut h, 1, false, t0),
            "the old layer goes on meanwhile"
        );
        let last = h.sequence_number.max(last);
        let mut h = header(5002, 900);
        assert!(selection.admit(&mut h, 2, true, t0 + Duration::from_millis(33)));
        assert_eq!(h.sequence_number, last.wrapping_add(1));
        let mut late = header(5001, 800);
        assert!(
            !selection.admit(&mut late, 2, false, t0),
            "older than the switch"
        );
        let mut h = header(104, 18_000);
        assert!(
            !selection.admit(&mut h, 1, false, t0),
            "the old layer stops"
        );
        let mut h = header(5003, 900);
        assert!(selection.admit(&mut h, 2, false, t0));
        assert_eq!(h.sequence_number, last.wrapping_add(2));
    }

    #[test]
    fn a_viewer_keeps_its_rank_when_the_publisher_changes() {
        let rids: Vec<String> = ["l", "m", "h"].map(String::from).into();
        let old = Layers::new(&rids, Duration::from_millis(500));
        let new = Layers::new(&rids, Duration::from_millis(500));
        let selection = Selection::new();
        selection.set_target(old.layers[1].source);
        selection.carry_over(&old, &new);
        assert_eq!(selection.sources().1, Some(new.layers[1].source));
        let single = Layers::new(&[], Duration::from_millis(500));
        selection.carry_over(&new, &single);
        assert_eq!(selection.sources().1, Some(single.layers[0].source));
        selection.carry_over(&single, &new);
        assert_eq!(selection.sources().1, Some(new.layers[2].source));
    }
}
