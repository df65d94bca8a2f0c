//! Metric names and labels, through the `metrics` facade (the host installs
//! the recorder, e.g. Prometheus).

use metrics::{Counter, counter, gauge};

use crate::keyframe::KeyframeSource;
use crate::kind::Kind;

pub(crate) fn publishers(session: &str, count: usize) {
    gauge!("oncolive_video_publishers", "session" => session.to_owned()).set(count as f64);
}

pub(crate) fn viewers(session: &str, count: usize) {
    gauge!("oncolive_video_viewers", "session" => session.to_owned()).set(count as f64);
}

/// Rooms (sessions with video state) held by this node's relay.
pub(crate) fn rooms(count: usize) {
    gauge!("oncolive_video_rooms").set(count as f64);
}

pub(crate) fn keyframe_request(session: &str, source: KeyframeSource, forwarded: bool) {
    counter!(
        "oncolive_video_keyframe_requests_total",
        "session" => session.to_owned(),
        "source" => source.label(),
        "sent" => if forwarded { "forwarded" } else { "suppressed" },
    )
    .increment(1);
}

/// Counters of one forwarding loop, resolved once: the hot path only adds.
pub(crate) struct Forwarded {
    packets: Counter,
    bytes: Counter,
}

impl Forwarded {
    pub(crate) fn new(session: &str, kind: Kind) -> Self {
        Self {
            packets: counter!(
                "oncolive_video_packets_forwarded_total",
                "session" => session.to_owned(),
                "kind" => kind.label(),
            ),
            bytes: counter!(
                "oncolive_video_bytes_forwarded_total",
                "session" => session.to_owned(),
                "kind" => kind.label(),
            ),
        }
    }

    /// One packet of `bytes` written to `viewers` viewers.
    pub(crate) fn add(&self, bytes: usize, viewers: usize) {
        if viewers > 0 {
            self.packets.increment(viewers as u64);
            self.bytes.increment((bytes * viewers) as u64);
        }
    }
}
