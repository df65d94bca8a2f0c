//! Coalescing of keyframe requests toward a publisher.
//!
//! Every joining viewer needs a keyframe, and every viewer's decoder may ask
//! for one (PLI/FIR). Forwarding each request would make the publisher's
//! encoder emit a keyframe per viewer (150 joiners, 150 keyframes). The gate
//! lets one request through per `min_interval`; requests inside the window
//! are folded into one trailing request at the window's end, so a viewer
//! that joined just after a keyframe still gets one within `min_interval`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a keyframe was asked for; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyframeSource {
    ViewerJoin,
    ViewerPli,
    PublisherChange,
    /// The recorder: a segment is due, or video resumes after loss.
    Recording,
    /// A viewer moves to another simulcast layer and waits for its keyframe.
    LayerSwitch,
    /// A viewer restarted ICE (a new network): what was sent meanwhile is lost.
    IceRestart,
}

impl KeyframeSource {
    pub(crate) const ALL: [KeyframeSource; 6] = [
        KeyframeSource::ViewerJoin,
        KeyframeSource::ViewerPli,
        KeyframeSource::PublisherChange,
        KeyframeSource::Recording,
        KeyframeSource::LayerSwitch,
        KeyframeSource::IceRestart,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            KeyframeSource::ViewerJoin => "viewer_join",
            KeyframeSource::ViewerPli => "viewer_pli",
            KeyframeSource::PublisherChange => "publisher_change",
            KeyframeSource::Recording => "recording",
            KeyframeSource::LayerSwitch => "layer_switch",
            KeyframeSource::IceRestart => "ice_restart",
        }
    }
}

/// What the caller must do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Send a PLI now.
    SendNow,
    /// Send one PLI after this delay (then call [`KeyframeGate::deferred_sent`]).
    SendAfter(Duration),
    /// A PLI was just sent or is already scheduled; nothing to do.
    Suppressed,
}

#[derive(Debug)]
pub(crate) struct KeyframeGate {
    min_interval: Duration,
    // A plain mutex: the critical section is a few comparisons, never awaits.
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    last_sent: Option<Instant>,
    trailing_scheduled: bool,
}

impl KeyframeGate {
    pub(crate) fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            state: Mutex::new(GateState::default()),
        }
    }

    pub(crate) fn request(&self, now: Instant) -> Decision {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.trailing_scheduled {
            return Decision::Suppressed;
        }
        match state.last_sent {
            Some(last) if now.saturating_duration_since(last) < self.min_interval => {
                state.trailing_scheduled = true;
                Decision::SendAfter(self.min_interval - now.saturating_duration_since(last))
            }
            _ => {
                state.last_sent = Some(now);
                Decision::SendNow
            }
        }
    }

    /// Records that the trailing request scheduled by `SendAfter` went out.
    pub(crate) fn deferred_sent(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.trailing_scheduled = false;
        state.last_sent = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_requests_in_one_window_make_two_plis() {
        let gate = KeyframeGate::new(Duration::from_millis(500));
        let t0 = Instant::now();
        assert_eq!(gate.request(t0), Decision::SendNow);
        let second = gate.request(t0 + Duration::from_millis(100));
        assert_eq!(second, Decision::SendAfter(Duration::from_millis(400)));
        for i in 0..150 {
            let at = t0 + Duration::from_millis(100 + i);
            assert_eq!(gate.request(at), Decision::Suppressed);
        }
        gate.deferred_sent(t0 + Duration::from_millis(500));
        assert!(matches!(
            gate.request(t0 + Duration::from_millis(600)),
            Decision::SendAfter(_)
        ));
        gate.deferred_sent(t0 + Duration::from_millis(1000));
        assert_eq!(
            gate.request(t0 + Duration::from_millis(1600)),
            Decision::SendNow
        );
    }
}
