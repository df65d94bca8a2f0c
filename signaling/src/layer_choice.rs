//! Which simulcast layer one viewer gets: the viewer's own choice (auto, data saver, high) and,
//! in auto, what its link carries, read from its receiver reports (loss) and REMB (when its
//! browser sends one). No I/O: the viewer's RTCP loop feeds it and applies what it decides.
//!
//! Auto starts on the lowest layer (the first picture comes soonest, even on a weak link) and
//! climbs one layer at a time while reports show no loss. A report with heavy loss steps down
//! at once and remembers the layer that did not fit as a ceiling; climbing back to it is tried
//! again only after a back-off that doubles each time the try fails, so a throttled viewer
//! settles on the layer it carries instead of oscillating.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The viewer's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// The best layer the link carries.
    #[default]
    Auto,
    /// Always the lowest layer ("data saver").
    Low,
    /// Always the highest layer, whatever the link.
    High,
}

/// One layer as the chooser sees it, in the room's order (lowest first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LayerView {
    pub source: u64,
    /// Measured over the last second; 0 before the first second.
    pub bitrate_bps: u64,
}

/// Loss (fraction of packets) in one report above which auto steps down.
const LOSS_DOWN: f64 = 0.10;
/// Loss at or below which a report counts as clean.
const LOSS_CLEAN: f64 = 0.02;
/// Clean time needed before the first climb, and between later climbs.
const FIRST_CLIMB: Duration = Duration::from_secs(1);
const CLIMB_EVERY: Duration = Duration::from_secs(2);
/// After a change, reports still describe the old layer's traffic for about this long.
const SETTLE: Duration = Duration::from_millis(1200);
/// Back-off before trying again a layer that did not fit.
const BACKOFF_MIN: Duration = Duration::from_secs(15);
const BACKOFF_MAX: Duration = Duration::from_secs(120);
/// A try of a ceiling layer that lasts this long without loss clears the back-off.
const PROVEN: Duration = Duration::from_secs(30);
/// Share of a REMB estimate a layer may use.
const REMB_SHARE: f64 = 0.85;

#[derive(Debug)]
pub(crate) struct Chooser {
    preference: Preference,
    target: Option<u64>,
    changed_at: Option<Instant>,
    /// Since when reports have been clean (`None`: the last one was not).
    clean_since: Option<Instant>,
    remb_bps: Option<u64>,
    /// The bitrate of the lowest layer that did not fit, and until when not to try it.
    ceiling: Option<(u64, Instant)>,
    backoff: Duration,
    /// When the current layer was reached by climbing to the ceiling's bitrate or above.
    trying_since: Option<Instant>,
}

impl Default for Chooser {
    fn default() -> Self {
        Chooser {
            preference: Preference::Auto,
            target: None,
            changed_at: None,
            clean_since: None,
            remb_bps: None,
            ceiling: None,
            backoff: BACKOFF_MIN,
            trying_since: None,
        }
    }
}

impl Chooser {
    pub(crate) fn preference(&self) -> Preference {
        self.preference
    }

    pub(crate) fn set_preference(&mut self, preference: Preference) {
        self.preference = preference;
    }

    /// A receiver report for this viewer's video: `fraction_lost` as in RFC 3550 (of 256).
    pub(crate) fn on_report(&mut self, fraction_lost: u8, layers: &[LayerView], now: Instant) {
        let loss = f64::from(fraction_lost) / 256.0;
        if loss <= LOSS_CLEAN {
            self.clean_since.get_or_insert(now);
            if let Some(since) = self.trying_since
                && now.saturating_duration_since(since) >= PROVEN
            {
                self.trying_since = None;
                self.ceiling = None;
                self.backoff = BACKOFF_MIN;
            }
            return;
        }
        self.clean_since = None;
        if loss < LOSS_DOWN || self.preference != Preference::Auto || self.settling(now) {
            return;
        }
        let Some(index) = self.index(layers) else {
            return;
        };
        if index == 0 {
            return;
        }
        let failed = layers[index].bitrate_bps;
        if self.trying_since.take().is_some() {
            // The layer tried again did not fit either: wait longer before the next try.
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
        self.ceiling = Some((failed, now + self.backoff));
        self.set(layers[index - 1].source, now);
    }

    /// The viewer's layer moves to `source` of a new publisher (the same rank as before).
    pub(crate) fn carry_over(&mut self, source: u64) {
        self.target = Some(source);
    }

    /// A REMB estimate for this viewer (bits per second).
    pub(crate) fn on_remb(&mut self, bitrate_bps: u64) {
        self.remb_bps = Some(bitrate_bps);
    }

    /// The layer this viewer should get now, given the room's layers (lowest first).
    pub(crate) fn choose(&mut self, layers: &[LayerView], now: Instant) -> Option<u64> {
        let (lowest, highest) = (layers.first()?, layers.last()?);
        match self.preference {
            Preference::Low => return Some(self.set(lowest.source, now)),
            Preference::High => return Some(self.set(highest.source, now)),
            Preference::Auto => {}
        }
        let Some(index) = self.index(layers) else {
            // New, or its layer is gone: start low (a layer that vanished was often the top
            // one, which the expert's browser stops sending when its own uplink is short).
            self.clean_since = None;
            return Some(self.set(lowest.source, now));
        };
        if let Some(remb) = self.remb_bps {
            let budget = (remb as f64 * REMB_SHARE) as u64;
            if index > 0 && layers[index].bitrate_bps > budget {
                let fits = layers[..index]
                    .iter()
                    .rposition(|l| l.bitrate_bps <= budget)
                    .unwrap_or(0);
                return Some(self.set(layers[fits].source, now));
            }
        }
        if let Some(next) = layers.get(index + 1)
            && self.may_climb(next, now)
        {
            if self.ceiling.is_some_and(|(bps, _)| at_ceiling(next, bps)) {
                self.trying_since = Some(now);
            }
            self.clean_since = None;
            return Some(self.set(next.source, now));
        }
        self.target
    }

    fn may_climb(&self, next: &LayerView, now: Instant) -> bool {
        let Some(clean_since) = self.clean_since else {
            return false;
        };
        // Until the first loss the link is unknown and the first climbs are quick.
        let wait = if self.ceiling.is_some() {
            CLIMB_EVERY
        } else {
            FIRST_CLIMB
        };
        if now.saturating_duration_since(clean_since) < wait || self.settling(now) {
            return false;
        }
        if let Some(remb) = self.remb_bps
            && next.bitrate_bps as f64 > remb as f64 * REMB_SHARE
        {
            return false;
        }
        match self.ceiling {
            Some((bps, until)) => !at_ceiling(next, bps) || now >= until,
            None => true,
        }
    }

    fn settling(&self, now: Instant) -> bool {
        self.changed_at
            .is_some_and(|at| now.saturating_duration_since(at) < SETTLE)
    }

    fn index(&self, layers: &[LayerView]) -> Option<usize> {
        let target = self.target?;
        layers.iter().position(|l| l.source == target)
    }

    fn set(&mut self, source: u64, now: Instant) -> u64 {
        if self.target != Some(source) {
            self.target = Some(source);
            self.changed_at = Some(now);
        }
        source
    }
}

/// Whether `layer` is (about) as heavy as a layer that did not fit: a layer's measured
/// bitrate moves by a few percent from second to second.
fn at_ceiling(layer: &LayerView, ceiling_bps: u64) -> bool {
    layer.bitrate_bps as f64 >= ceiling_bps as f64 * 0.9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> Vec<LayerView> {
        [(1, 150_000), (2, 500_000), (3, 1_300_000)]
            .into_iter()
            .map(|(source, bitrate_bps)| LayerView {
                source,
                bitrate_bps,
            })
            .collect()
    }

    /// Drives a chooser with one report a second, the loss a link of `capacity` gives.
    fn run(chooser: &mut Chooser, capacity: u64, seconds: u64, t0: Instant) -> Vec<u64> {
        let layers = layers();
        let mut chosen = Vec::new();
        for s in 0..seconds {
            let now = t0 + Duration::from_secs(s);
            let current = chooser.choose(&layers, now).unwrap();
            let rate = layers
                .iter()
                .find(|l| l.source == current)
                .unwrap()
                .bitrate_bps;
            let loss = rate.saturating_sub(capacity) as f64 / rate as f64;
            chooser.on_report(
                (loss * 256.0) as u8,
                &layers,
                now + Duration::from_millis(500),
            );
            chosen.push(current);
        }
        chosen
    }

    #[test]
    fn a_clean_link_climbs_to_the_top_and_stays() {
        let mut chooser = Chooser::default();
        let chosen = run(&mut chooser, 10_000_000, 20, Instant::now());
        assert_eq!(chosen[0], 1);
        assert!(chosen[..6].contains(&3), "{chosen:?}");
        assert!(chosen[6..].iter().all(|&s| s == 3), "{chosen:?}");
    }

    #[test]
    fn a_throttled_link_settles_low_and_rarely_tries_again() {
        let mut chooser = Chooser::default();
        let chosen = run(&mut chooser, 300_000, 120, Instant::now());
        let tries = chosen.windows(2).filter(|w| w[0] == 1 && w[1] != 1).count();
        let low = chosen.iter().filter(|&&s| s == 1).count();
        assert!(tries <= 4, "{tries} tries: {chosen:?}");
        assert!(low >= 110, "{low} of 120 s on the low layer: {chosen:?}");
        assert!(!chosen.contains(&3), "{chosen:?}");
    }

    #[test]
    fn a_layer_whose_bitrate_wobbles_is_still_the_one_that_did_not_fit() {
        let t0 = Instant::now();
        let mut chooser = Chooser::default();
        let mut tries = 0;
        let mut on_middle = false;
        for s in 0..60u64 {
            let now = t0 + Duration::from_secs(s);
            // The middle layer measures 5 % lighter every other second.
            let mut views = layers();
            if s % 2 == 1 {
                views[1].bitrate_bps = 475_000;
            }
            let current = chooser.choose(&views, now).unwrap();
            if current == 2 && !on_middle {
                tries += 1;
            }
            on_middle = current == 2;
            let loss = if current == 1 { 0 } else { 100 };
            chooser.on_report(loss, &views, now + Duration::from_millis(500));
        }
        assert!(tries <= 3, "{tries} tries in 60 s");
    }

    #[test]
    fn a_middle_link_settles_in_the_middle() {
        let mut chooser = Chooser::default();
        let chosen = run(&mut chooser, 800_000, 60, Instant::now());
        assert!(
            chosen[20..].iter().filter(|&&s| s == 2).count() >= 36,
            "{chosen:?}"
        );
    }

    #[test]
    fn the_viewers_choice_wins() {
        let t0 = Instant::now();
        let mut chooser = Chooser::default();
        chooser.set_preference(Preference::High);
        assert_eq!(chooser.choose(&layers(), t0), Some(3));
        chooser.on_report(200, &layers(), t0);
        assert_eq!(chooser.choose(&layers(), t0), Some(3));
        chooser.set_preference(Preference::Low);
        assert_eq!(chooser.choose(&layers(), t0), Some(1));
    }

    #[test]
    fn remb_caps_the_layer() {
        let t0 = Instant::now();
        let mut chooser = Chooser::default();
        chooser.set_preference(Preference::High);
        chooser.choose(&layers(), t0);
        chooser.set_preference(Preference::Auto);
        chooser.on_remb(600_000);
        assert_eq!(chooser.choose(&layers(), t0), Some(2));
        for s in 1..10 {
            let now = t0 + Duration::from_secs(s);
            chooser.on_report(0, &layers(), now);
            assert_eq!(chooser.choose(&layers(), now), Some(2));
        }
    }

    #[test]
    fn a_vanished_layer_moves_the_viewer() {
        let t0 = Instant::now();
        let mut chooser = Chooser::default();
        chooser.set_preference(Preference::High);
        assert_eq!(chooser.choose(&layers(), t0), Some(3));
        chooser.set_preference(Preference::Auto);
        let two = &layers()[..2];
        assert_eq!(chooser.choose(two, t0), Some(1));
        assert_eq!(chooser.choose(&[], t0), None);
    }
}
