//! Recording: every broadcast is written to the media store as it arrives,
//! without transcoding (H.264 → fragmented MP4, VP8 → WebM, Opus in both).
//!
//! The forwarding loops hand each packet to the session's recorder with
//! `try_send` on a bounded channel ([`Tap::offer`]): forwarding never waits
//! for the recorder; a full channel drops the packet for the recording only
//! (counted in `oncolive_recording_dropped_packets_total`). One task per
//! session owns everything else: depacketizing ([`crate::record_rtp`]), the
//! media timeline, the segmenter (`oncolive_media::Segmenter`), and the
//! manifest, which it rewrites after each stored file. See `docs/video.md`,
//! "Recording".

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use oncolive_media::manifest::{self, Manifest, Span};
use oncolive_media::{Frame, MediaStore, Output, Resume, Segmenter, StoreError, Track, VideoCodec};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::keyframe::KeyframeSource;
use crate::kind::Kind;
use crate::metrics;
use crate::record_follow::{LayerFollow, LayerPacket, Verdict};
use crate::record_rtp::{Depacketizer, Payload, TimestampUnwrapper};
use crate::room::Room;

/// Where and how broadcasts are recorded (`RelayConfig::recording`).
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    pub store: MediaStore,
    /// Segments are cut at the first video keyframe after this long (and a
    /// keyframe is asked for when it is due).
    pub target_segment: Duration,
}

impl RecordingConfig {
    pub fn new(store: MediaStore) -> Self {
        Self {
            store,
            target_segment: Duration::from_secs(4),
        }
    }
}

/// Packets a recorder may have queued: about 15 s of a 1.5 Mbit/s broadcast,
/// enough to ride out a slow store write (each file is written inline).
const QUEUE: usize = 2048;

/// Least time between two keyframe requests of one recorder.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_secs(1);

/// What one publisher's packets carry to the recorder: which stretch of
/// publishing (span) they belong to.
pub(crate) struct SpanInfo {
    pub generation: u64,
    pub video: Option<VideoCodec>,
    pub room: Weak<Room>,
}

struct Tapped {
    span: Arc<SpanInfo>,
    kind: Kind,
    /// Video only: the packet's layer.
    layer: Option<LayerPacket>,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Bytes,
    at: Instant,
}

enum Control {
    /// The publisher of this generation left: close the open segment.
    Gone(u64),
    /// Flush, write the manifest (ended when `end` says so), and stop.
    Finish {
        ended_at_ms: Option<i64>,
        done: oneshot::Sender<()>,
    },
}

/// A session's recorder, as the relay holds it.
#[derive(Clone)]
pub(crate) struct RecorderHandle {
    packets: mpsc::Sender<Tapped>,
    control: mpsc::UnboundedSender<Control>,
}

/// The forwarding loops' side of one publisher's recording.
pub(crate) struct Tap {
    packets: mpsc::Sender<Tapped>,
    span: Arc<SpanInfo>,
    dropped: AtomicU64,
}

impl Tap {
    /// Hands a packet to the recorder, never waiting.
    pub(crate) fn offer(
        &self,
        kind: Kind,
        packet: &webrtc::rtp::packet::Packet,
        layer: Option<LayerPacket>,
    ) {
        let tapped = Tapped {
            span: self.span.clone(),
            kind,
            layer,
            seq: packet.header.sequence_number,
            ts: packet.header.timestamp,
            marker: packet.header.marker,
            payload: packet.payload.clone(),
            at: Instant::now(),
        };
        if self.packets.try_send(tapped).is_err() {
            metrics::recording_dropped();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "the recorder is behind: packets dropped from the recording"
                );
            }
        }
    }
}

/// Sends `Gone` when the publisher is dropped (removed, replaced, ended).
pub(crate) struct GoneOnDrop {
    control: mpsc::UnboundedSender<Control>,
    generation: u64,
}

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Gone(self.generation));
    }
}

impl RecorderHandle {
    pub(crate) fn tap(&self, span: SpanInfo) -> (Arc<Tap>, GoneOnDrop) {
        let gone = GoneOnDrop {
            control: self.control.clone(),
            generation: span.generation,
        };
        let tap = Tap {
            packets: self.packets.clone(),
            span: Arc::new(span),
            dropped: AtomicU64::new(0),
        };
        (Arc::new(tap), gone)
    }

    /// `true` once the recorder has flushed and written its manifest.
    async fn finish(&self, ended_at_ms: Option<i64>) -> bool {
        let (done, wait) = oneshot::channel();
        self.control
            .send(Control::Finish { ended_at_ms, done })
            .is_ok()
            && wait.await.is_ok()
    }
}

/// The recorders of this node, one per session being recorded.
pub(crate) struct Recorders {
    config: RecordingConfig,
    // A plain mutex: lookups and inserts only, never held across an await.
    by_session: Mutex<HashMap<String, RecorderHandle>>,
}

impl Recorders {
    pub(crate) fn new(config: RecordingConfig) -> Self {
        Self {
            config,
            by_session: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, RecorderHandle>> {
        self.by_session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's recorder, started if needed. It outlives publishers:
    /// the next one continues the same recording.
    pub(crate) fn recorder(&self, session: &str) -> RecorderHandle {
        let mut map = self.map();
        if let Some(handle) = map.get(session)
            && !handle.control.is_closed()
        {
            return handle.clone();
        }
        let (packets, packets_rx) = mpsc::channel(QUEUE);
        let (control, control_rx) = mpsc::unbounded_channel();
        let handle = RecorderHandle { packets, control };
        let span = tracing::info_span!("recorder", session);
        tokio::spawn(
            run(
                session.to_owned(),
                self.config.clone(),
                packets_rx,
                control_rx,
            )
            .instrument(span),
        );
        map.insert(session.to_owned(), handle.clone());
        handle
    }

    /// Ends the session's recording: flushes the open segment and marks the
    /// manifest ended. Without a recorder here (nothing recorded on this
    /// node, or the process that recorded died), an unended manifest in the
    /// store is marked ended.
    pub(crate) async fn end(&self, session: &str) {
        let handle = self.map().remove(session);
        let now = unix_ms();
        if let Some(handle) = handle
            && handle.finish(Some(now)).await
        {
            return;
        }
        let store = &self.config.store;
        let key = manifest::manifest_key(session);
        match load_manifest(store, session).await {
            Ok(Some(mut manifest)) if !manifest.ended() => {
                manifest.ended_at_ms = Some(now);
                if let Err(err) = put_manifest(store, &manifest).await {
                    tracing::error!(session, %key, error = %err, "marking the recording ended");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::error!(session, %key, error = %err, "reading the manifest"),
        }
    }

    /// Ends the session's recording if this node records it; touches nothing else (a node that
    /// learns of the end from the hub must not rewrite a manifest another node is closing).
    pub(crate) async fn end_local(&self, session: &str) {
        let handle = self.map().remove(session);
        if let Some(handle) = handle {
            handle.finish(Some(unix_ms())).await;
        }
    }

    /// Flushes every recorder (relay shutdown); recordings stay unended.
    pub(crate) async fn shutdown(&self) {
        let handles: Vec<RecorderHandle> = self.map().drain().map(|(_, h)| h).collect();
        for handle in handles {
            handle.finish(None).await;
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn load_manifest(store: &MediaStore, session: &str) -> Result<Option<Manifest>, StoreError> {
    match store.get(&manifest::manifest_key(session)).await {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(manifest) => Ok(Some(manifest)),
            Err(err) => {
                tracing::error!(session, error = %err, "unreadable recording manifest; starting over");
                Ok(None)
            }
        },
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

async fn put_manifest(store: &MediaStore, manifest: &Manifest) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(manifest).unwrap_or_default();
    store
        .put(
            &manifest::manifest_key(&manifest.session),
            Bytes::from(json),
        )
        .await
}

/// One track's place on the media timeline within a span.
struct Timeline {
    unwrap: TimestampUnwrapper,
    /// (extended RTP timestamp, media ticks) of the track's first packet.
    anchor: Option<(u64, u64)>,
    depacketizer: Depacketizer,
}

impl Timeline {
    fn new(payload: Payload) -> Timeline {
        Timeline {
            unwrap: TimestampUnwrapper::default(),
            anchor: None,
            depacketizer: Depacketizer::new(payload),
        }
    }
}

/// The current stretch of publishing.
struct CurrentSpan {
    info: Arc<SpanInfo>,
    /// Arrival of the span's first packet and its media time (ms).
    start: Instant,
    media_ms: u64,
    audio: Timeline,
    video: Timeline,
    video_payload: Payload,
    /// Which video layer is recorded (one, or the best of a simulcast publisher's).
    follow: LayerFollow,
    /// The newest video frame's media time (ticks): a new layer's timeline starts after it.
    video_end: Option<u64>,
}

struct Recorder {
    session: String,
    store: MediaStore,
    target_ms: u32,
    manifest: Option<Manifest>,
    segmenter: Segmenter,
    /// The init segment of the open part, until it is stored.
    unstored_init: Option<(oncolive_media::Part, Bytes)>,
    span: Option<CurrentSpan>,
    /// Generations whose span is over; their late packets are ignored.
    finished: HashSet<u64>,
    last_keyframe_request: Option<Instant>,
}

async fn run(
    session: String,
    config: RecordingConfig,
    mut packets: mpsc::Receiver<Tapped>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let store = config.store.clone();
    // A recording left by an earlier process continues (a new part, media
    // time from its end); it is only marked ended by `end_session`.
    let manifest = match load_manifest(&store, &session).await {
        Ok(manifest) => manifest,
        Err(err) => {
            tracing::error!(error = %err, "reading the manifest; a new recording overwrites it");
            None
        }
    };
    let resume = manifest.as_ref().map_or(Resume::default(), |m| Resume {
        next_part: m.parts.len() as u32,
        next_seq: m.segments().map(|(_, s)| s.seq + 1).max().unwrap_or(0),
        media_ms: m.duration_ms(),
    });
    if manifest.is_some() {
        tracing::info!(media_ms = resume.media_ms, "continuing a stored recording");
    }
    let target_ms = config.target_segment.as_millis().clamp(500, 60_000) as u32;
    let mut recorder = Recorder {
        session,
        store,
        target_ms,
        manifest,
        segmenter: Segmenter::new(Duration::from_millis(u64::from(target_ms)), resume),
        unstored_init: None,
        span: None,
        finished: HashSet::new(),
        last_keyframe_request: None,
    };
    loop {
        // Control first, but the packets already queued go before it, so a
        // flush includes everything the publisher sent.
        tokio::select! {
            biased;
            message = control.recv() => {
                let Some(message) = message else { break };
                while let Ok(packet) = packets.try_recv() {
                    recorder.packet(packet).await;
                }
                match message {
                    Control::Gone(generation) => recorder.gone(generation).await,
                    Control::Finish { ended_at_ms, done } => {
                        recorder.finish(ended_at_ms).await;
                        let _ = done.send(());
                        break;
                    }
                }
            }
            packet = packets.recv() => match packet {
                Some(packet) => recorder.packet(packet).await,
                None => break,
            },
        }
    }
}

impl Recorder {
    async fn packet(&mut self, packet: Tapped) {
        let generation = packet.span.generation;
        if self.finished.contains(&generation) {
            return;
        }
        if self
            .span
            .as_ref()
            .is_none_or(|s| s.info.generation != generation)
        {
            self.begin_span(&packet).await;
        }
        let Some(span) = self.span.as_mut() else {
            return;
        };
        if let Some(layer) = packet.layer {
            match span.follow.packet(layer, packet.at) {
                Verdict::Record => {}
                Verdict::Skip => {
                    self.ask_keyframe_if_due();
                    return;
                }
                Verdict::Switch => {
                    tracing::debug!(source = layer.source, rank = layer.rank, "recorder switch");
                    if span.video.anchor.is_some() {
                        tracing::info!(
                            source = layer.source,
                            rank = layer.rank,
                            "recording another video layer"
                        );
                    }
                    span.video = Timeline::new(span.video_payload);
                }
            }
        }
        let (timeline, track) = match packet.kind {
            Kind::Audio => (&mut span.audio, Track::Audio),
            Kind::Video => (&mut span.video, Track::Video),
        };
        let ts = timeline.unwrap.extend(packet.ts);
        let rate = u64::from(track.timescale());
        let anchor = *timeline.anchor.get_or_insert_with(|| {
            // A/V alignment: each track starts at its first packet's arrival
            // after the span's first packet (of either track).
            let since = packet.at.saturating_duration_since(span.start);
            let ticks = span.media_ms * rate / 1000 + (since.as_secs_f64() * rate as f64) as u64;
            // A layer moved to never starts before the last one's newest frame.
            let after = match track {
                Track::Video => span.video_end.map_or(0, |end| end + 1),
                Track::Audio => 0,
            };
            (ts, ticks.max(after))
        });
        let units =
            timeline
                .depacketizer
                .push(packet.seq, ts, packet.marker, packet.payload, packet.at);
        let mut outputs = Vec::new();
        for unit in units {
            let pts = (anchor.1 as i64 + (unit.ts as i64 - anchor.0 as i64)).max(0) as u64;
            if track == Track::Video {
                span.video_end = span.video_end.max(Some(pts));
                span.follow.wrote_frame(packet.at);
            }
            outputs.extend(self.segmenter.push(Frame {
                track,
                pts,
                keyframe: unit.keyframe,
                data: unit.data,
            }));
        }
        self.store_outputs(outputs).await;
        self.ask_keyframe_if_due();
    }

    async fn begin_span(&mut self, first: &Tapped) {
        if let Some(old) = self.span.take() {
            // Replaced without a `Gone` yet: close the old span here.
            self.finished.insert(old.info.generation);
            let outputs = self.flush_span(old);
            self.store_outputs(outputs).await;
        }
        let info = first.span.clone();
        let outputs = self.segmenter.begin_span(info.video);
        self.store_outputs(outputs).await;
        let media_ms = self.segmenter.media_end_ms();
        let wall_ms = unix_ms() - first.at.elapsed().as_millis() as i64;
        let manifest = self
            .manifest
            .get_or_insert_with(|| Manifest::new(&self.session, wall_ms, self.target_ms));
        manifest.ended_at_ms = None;
        manifest.spans.push(Span { media_ms, wall_ms });
        tracing::info!(
            generation = info.generation,
            media_ms,
            video = ?info.video,
            "recording a publisher"
        );
        let video_payload = match info.video {
            Some(VideoCodec::H264) => Payload::H264,
            _ => Payload::Vp8,
        };
        self.span = Some(CurrentSpan {
            info,
            start: first.at,
            media_ms,
            audio: Timeline::new(Payload::Opus),
            video: Timeline::new(video_payload),
            video_payload,
            follow: LayerFollow::default(),
            video_end: None,
        });
    }

    /// What is left of a span's frames, then the open segment.
    fn flush_span(&mut self, mut span: CurrentSpan) -> Vec<Output> {
        let mut outputs = Vec::new();
        for (timeline, track) in [
            (&mut span.video, Track::Video),
            (&mut span.audio, Track::Audio),
        ] {
            let Some(anchor) = timeline.anchor else {
                continue;
            };
            for unit in timeline.depacketizer.finish() {
                let pts = (anchor.1 as i64 + (unit.ts as i64 - anchor.0 as i64)).max(0) as u64;
                outputs.extend(self.segmenter.push(Frame {
                    track,
                    pts,
                    keyframe: unit.keyframe,
                    data: unit.data,
                }));
            }
        }
        outputs.extend(self.segmenter.flush());
        outputs
    }

    async fn gone(&mut self, generation: u64) {
        self.finished.insert(generation);
        if self
            .span
            .as_ref()
            .is_some_and(|s| s.info.generation == generation)
            && let Some(span) = self.span.take()
        {
            tracing::info!(generation, "publisher gone; segment closed");
            let outputs = self.flush_span(span);
            self.store_outputs(outputs).await;
        }
    }

    async fn finish(&mut self, ended_at_ms: Option<i64>) {
        let outputs = match self.span.take() {
            Some(span) => self.flush_span(span),
            None => self.segmenter.flush(),
        };
        self.store_outputs(outputs).await;
        if let Some(manifest) = self.manifest.as_mut() {
            if ended_at_ms.is_some() {
                manifest.ended_at_ms = ended_at_ms;
            }
            if let Err(err) = put_manifest(&self.store, manifest).await {
                metrics::recording_store_error();
                tracing::error!(error = %err, "writing the final manifest");
            }
        }
        tracing::info!(ended = ended_at_ms.is_some(), "recorder finished");
    }

    /// Stores each file whole, then the manifest naming it: the manifest
    /// never names a file that is not stored.
    async fn store_outputs(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Part { part, init } => {
                    self.unstored_init = Some((part, init));
                    self.store_init().await;
                }
                Output::Segment { segment, bytes } => {
                    if self.unstored_init.is_some() && !self.store_init().await {
                        tracing::warn!(segment = %segment.name, "dropped: its init segment is not stored");
                        continue;
                    }
                    let key = manifest::object_key(&self.session, &segment.name);
                    if let Err(err) = self.store.put(&key, bytes).await {
                        metrics::recording_store_error();
                        tracing::error!(%key, error = %err, "storing a segment");
                        continue;
                    }
                    metrics::recording_segment(segment.bytes);
                    let Some(manifest) = self.manifest.as_mut() else {
                        continue;
                    };
                    if let Some(part) = manifest.parts.last_mut() {
                        part.segments.push(segment);
                    }
                    self.write_manifest().await;
                }
            }
        }
    }

    /// Stores the open part's init segment and lists the part; `false` if it failed.
    async fn store_init(&mut self) -> bool {
        let Some((part, init)) = self.unstored_init.take() else {
            return true;
        };
        let key = manifest::object_key(&self.session, &part.init);
        if let Err(err) = self.store.put(&key, init.clone()).await {
            metrics::recording_store_error();
            tracing::error!(%key, error = %err, "storing an init segment");
            self.unstored_init = Some((part, init));
            return false;
        }
        tracing::info!(init = %part.init, codecs = %part.codecs, "recording part");
        if let Some(manifest) = self.manifest.as_mut() {
            manifest.parts.push(part);
        }
        self.write_manifest().await;
        true
    }

    async fn write_manifest(&self) {
        if let Some(manifest) = &self.manifest
            && let Err(err) = put_manifest(&self.store, manifest).await
        {
            metrics::recording_store_error();
            tracing::error!(error = %err, "writing the manifest");
        }
    }

    /// Asks for a keyframe when a segment is due or video waits for one,
    /// at most once per [`KEYFRAME_REQUEST_EVERY`], through the room's gate.
    fn ask_keyframe_if_due(&mut self) {
        let Some(span) = &self.span else {
            return;
        };
        if span.info.video.is_none() {
            return;
        }
        let now = Instant::now();
        let source = match span.follow.wanted(now) {
            // a better layer (or, the recorded one silent, one that sends) to move to
            Some(source) => Some(source),
            None => {
                let waiting =
                    span.video.anchor.is_some() && span.video.depacketizer.waiting_for_keyframe();
                if !(waiting || self.segmenter.wants_keyframe()) {
                    return;
                }
                span.follow.current().or(span.follow.first_seen())
            }
        };
        if self
            .last_keyframe_request
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_REQUEST_EVERY)
        {
            return;
        }
        if let Some(room) = span.info.room.upgrade() {
            tracing::debug!(?source, "recorder asks a keyframe");
            self.last_keyframe_request = Some(now);
            // `None` (no packet yet): the room asks the top layer.
            room.request_keyframe(KeyframeSource::Recording, source);
        }
    }
}
