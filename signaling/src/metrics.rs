//! Metric names and labels, through the `metrics` facade (the host installs the recorder, e.g.
//! Prometheus, and calls [`describe`] once after installing it).
//!
//! Every metric is per node, never per session: a label per session would add series for every
//! session ever held and keep them after it ended. How many watch one session is in the API
//! (`GET /api/sessions/{id}`); the node totals here go down when a room ends.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use metrics::{Counter, Unit, counter, describe_counter, describe_gauge, gauge};

use crate::keyframe::KeyframeSource;
use crate::kind::Kind;

const PUBLISHERS: &str = "oncolive_video_publishers";
const VIEWERS: &str = "oncolive_video_viewers";
const KEYFRAMES: &str = "oncolive_video_keyframe_requests_total";
const PACKETS: &str = "oncolive_video_packets_forwarded_total";
const BYTES: &str = "oncolive_video_bytes_forwarded_total";
const RECORDING_DROPPED: &str = "oncolive_recording_dropped_packets_total";
const RECORDING_SEGMENTS: &str = "oncolive_recording_segments_total";
const RECORDING_BYTES: &str = "oncolive_recording_bytes_total";
const RECORDING_STORE_ERRORS: &str = "oncolive_recording_store_errors_total";

/// Describes every relay metric and gives each of its label sets a zero, so that a scrape of a
/// fresh node finds every series (an absent series cannot be alerted on).
pub fn describe() {
    describe_gauge!(
        PUBLISHERS,
        "Publishers (expert cameras) connected to this node's relay."
    );
    describe_gauge!(VIEWERS, "WHEP viewers connected to this node's relay.");
    describe_gauge!(
        ROOMS,
        "Rooms (sessions with a publisher, a viewer or a watcher) held by this node's relay."
    );
    describe_counter!(
        KEYFRAMES,
        "Keyframe requests, by why they were asked for and whether a PLI was sent."
    );
    describe_counter!(PACKETS, "RTP packets written to viewers (one per viewer).");
    describe_counter!(BYTES, Unit::Bytes, "RTP bytes written to viewers.");
    describe_counter!(
        RECORDING_DROPPED,
        "RTP packets left out of a recording because its recorder was behind."
    );
    describe_counter!(RECORDING_SEGMENTS, "Recording media segments stored.");
    describe_counter!(
        RECORDING_BYTES,
        Unit::Bytes,
        "Bytes of recording media segments stored."
    );
    describe_counter!(
        RECORDING_STORE_ERRORS,
        "Failed writes of recording files or manifests to the media store."
    );
    for name in [
        RECORDING_DROPPED,
        RECORDING_SEGMENTS,
        RECORDING_BYTES,
        RECORDING_STORE_ERRORS,
    ] {
        counter!(name).increment(0);
    }
    gauge!(PUBLISHERS).increment(0.0);
    gauge!(VIEWERS).increment(0.0);
    gauge!(ROOMS).increment(0.0);
    for source in KeyframeSource::ALL {
        for sent in [true, false] {
            keyframe_counter(source, sent).increment(0);
        }
    }
    for kind in [Kind::Audio, Kind::Video] {
        let _ = Forwarded::new(kind);
    }
}

/// The last count reported per session, so the node totals move by the difference; a session
/// back at zero is forgotten, so the table holds only rooms with someone in them.
struct PerSession {
    metric: &'static str,
    counts: Mutex<HashMap<String, usize>>,
}

impl PerSession {
    fn set(&self, session: &str, count: usize) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let old = if count == 0 {
            counts.remove(session)
        } else {
            counts.insert(session.to_owned(), count)
        }
        .unwrap_or(0);
        gauge!(self.metric).increment(count as f64 - old as f64);
    }
}

static PUBLISHERS_BY_SESSION: LazyLock<PerSession> = LazyLock::new(|| PerSession {
    metric: PUBLISHERS,
    counts: Mutex::default(),
});
static VIEWERS_BY_SESSION: LazyLock<PerSession> = LazyLock::new(|| PerSession {
    metric: VIEWERS,
    counts: Mutex::default(),
});

pub(crate) fn publishers(session: &str, count: usize) {
    PUBLISHERS_BY_SESSION.set(session, count);
}

pub(crate) fn viewers(session: &str, count: usize) {
    VIEWERS_BY_SESSION.set(session, count);
}

const ROOMS: &str = "oncolive_video_rooms";

/// Rooms (sessions with video state) held by this node's relay.
pub(crate) fn rooms(count: usize) {
    gauge!(ROOMS).set(count as f64);
}

fn keyframe_counter(source: KeyframeSource, forwarded: bool) -> Counter {
    counter!(
        KEYFRAMES,
        "source" => source.label(),
        "sent" => if forwarded { "forwarded" } else { "suppressed" },
    )
}

pub(crate) fn keyframe_request(source: KeyframeSource, forwarded: bool) {
    keyframe_counter(source, forwarded).increment(1);
}

/// Counters of one forwarding loop, resolved once: the hot path only adds.
pub(crate) struct Forwarded {
    packets: Counter,
    bytes: Counter,
}

impl Forwarded {
    pub(crate) fn new(kind: Kind) -> Self {
        let packets = counter!(PACKETS, "kind" => kind.label());
        let bytes = counter!(BYTES, "kind" => kind.label());
        packets.increment(0);
        bytes.increment(0);
        Self { packets, bytes }
    }

    /// One packet of `bytes` written to `viewers` viewers.
    pub(crate) fn add(&self, bytes: usize, viewers: usize) {
        if viewers > 0 {
            self.packets.increment(viewers as u64);
            self.bytes.increment((bytes * viewers) as u64);
        }
    }
}

pub(crate) fn recording_dropped() {
    counter!(RECORDING_DROPPED).increment(1);
}

pub(crate) fn recording_segment(bytes: u64) {
    counter!(RECORDING_SEGMENTS).increment(1);
    counter!(RECORDING_BYTES).increment(bytes);
}

pub(crate) fn recording_store_error() {
    counter!(RECORDING_STORE_ERRORS).increment(1);
}
