//! A room: the relay's side of one session. It owns the outgoing tracks that
//! all viewers share, the current publisher and the viewers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::TrackLocal;

use crate::budget::Slot;
use crate::engine::{close_pc, opus_capability};
use crate::error::ApiError;
use crate::fanout::FanoutTrack;
use crate::keyframe::{Decision, KeyframeSource};
use crate::kind::Kind;
use crate::layers::{Layer, Layers, Selection, Selections};
use crate::metrics;
use crate::rewrite::StreamRewriter;
use crate::sdp::Codec;

/// The id of a new publisher or viewer: the last segment of its resource URL.
pub(crate) fn new_resource_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Keeps one peer's `PATCH`es (trickle, ICE restart) one at a time: an ICE
/// restart is an offer/answer exchange no other fragment may interleave with,
/// and the `If-Match` check must see the ICE session the request acts on.
pub(crate) type PatchLock = Arc<tokio::sync::Mutex<()>>;

/// The publisher's peer connection and what the relay learned from it.
pub(crate) struct Publisher {
    pub id: String,
    pub generation: u64,
    pub pc: Arc<RTCPeerConnection>,
    pub patching: PatchLock,
    /// The publisher's video layers (one without simulcast), with their SSRCs once known.
    pub layers: Arc<Layers>,
    /// Tells the recorder this publisher's span is over when it is dropped
    /// (removed, replaced, or the session ended).
    pub _recording: Option<crate::record::GoneOnDrop>,
    /// An edge's pull: where this stream comes from (`None`: a WHIP publisher of this node,
    /// which makes this node the session's origin).
    pub pulled: Option<Pulled>,
}

/// An edge's pull, as the origin knows it: its WHEP endpoint and the resource to `DELETE`.
#[derive(Debug, Clone)]
pub(crate) struct Pulled {
    pub whep_url: String,
    /// The absolute URL of the origin's resource for the pull, if it said (`Location`).
    pub resource_url: Option<String>,
    pub token: String,
}

pub(crate) struct Viewer {
    pub id: String,
    pub pc: Arc<RTCPeerConnection>,
    pub patching: PatchLock,
    pub audio: Option<Arc<RTCRtpSender>>,
    pub video: Option<Arc<RTCRtpSender>>,
    /// The video sender's SSRC: the key of the viewer's layer selection.
    pub video_ssrc: Option<u32>,
    /// The viewer's share of the budgets, given back when the viewer is gone.
    pub _slot: Slot,
}

impl Viewer {
    /// Unbinds the viewer from the shared tracks at once (forwarding to it
    /// stops with the next packet), then closes its connection.
    pub(crate) async fn teardown(self) {
        for sender in [self.audio, self.video].into_iter().flatten() {
            if let Err(err) = sender.stop().await {
                tracing::debug!(viewer = %self.id, error = %err, "stopping a sender");
            }
        }
        close_pc(&self.pc, &self.id).await;
    }
}

/// A request negotiating in a room (see [`Room::begin_request`]).
pub(crate) struct Pending(Arc<Room>);

impl std::ops::Deref for Pending {
    type Target = Arc<Room>;
    fn deref(&self) -> &Arc<Room> {
        &self.0
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
        self.0.idle.notify_one();
    }
}

/// A viewer sender bound to an old track, to be moved to the room's new one.
pub(crate) type TrackSwap = (Arc<RTCRtpSender>, Arc<FanoutTrack>);

pub(crate) struct Room {
    pub session: String,
    live: watch::Sender<bool>,
    /// The relay's: told whenever `live` flips (the node reports it to the other nodes).
    live_changed: Arc<Notify>,
    /// An edge's pull is being negotiated (one at a time).
    pub(crate) pulling: AtomicBool,
    keyframe_min_interval: Duration,
    /// Every video viewer's layer choice and numbering, shared with the room's video tracks.
    selections: Arc<Selections>,
    /// Generation of the current publisher; forwarding loops of older
    /// generations stop at their next packet. Read per packet, hence atomic.
    generation: AtomicU64,
    /// `state.viewers.len()`, read per forwarded packet for the metrics.
    viewer_count: AtomicUsize,
    /// Audio has no layers: one numbering for all viewers (video's is per viewer, see
    /// [`Selection`]).
    audio_rewriter: Mutex<StreamRewriter>,
    /// Requests negotiating in this room; the room is not freed while any is.
    pending: AtomicUsize,
    /// Wakes the relay's sweeper when the room may have become idle.
    idle: Arc<Notify>,
    /// Membership and tracks under one lock: changes are rare (joins, leaves,
    /// publisher changes), short, and never held across an `.await`.
    state: Mutex<RoomState>,
}

struct RoomState {
    ended: bool,
    audio: Arc<FanoutTrack>,
    video: Arc<FanoutTrack>,
    video_codec: Codec,
    /// The current publisher's layers, or the last one's (viewers keep their rank when the
    /// next publisher comes).
    layers: Arc<Layers>,
    publisher: Option<Publisher>,
    viewers: HashMap<String, Viewer>,
}

impl Room {
    pub(crate) fn new(
        session: &str,
        keyframe_min_interval: Duration,
        idle: Arc<Notify>,
        live_changed: Arc<Notify>,
    ) -> Arc<Room> {
        let codec = Codec::vp8();
        let stream_id = format!("oncolive-{session}");
        let audio = Arc::new(FanoutTrack::new(opus_capability(), "audio", &stream_id));
        let selections = Arc::new(Selections::default());
        let video = Arc::new(FanoutTrack::video(
            codec.capability(),
            &stream_id,
            selections.clone(),
        ));
        Arc::new(Room {
            session: session.to_owned(),
            live: watch::channel(false).0,
            live_changed,
            pulling: AtomicBool::new(false),
            keyframe_min_interval,
            selections,
            generation: AtomicU64::new(0),
            viewer_count: AtomicUsize::new(0),
            audio_rewriter: Mutex::new(StreamRewriter::new(48_000)),
            pending: AtomicUsize::new(0),
            idle,
            state: Mutex::new(RoomState {
                ended: false,
                audio,
                video,
                video_codec: codec,
                layers: Layers::new(&[], keyframe_min_interval),
                publisher: None,
                viewers: HashMap::new(),
            }),
        })
    }

    /// Whether nothing needs the room: no publisher, no viewer, no request
    /// negotiating, nobody watching whether it is live. Such a room is freed.
    pub(crate) fn is_idle(&self) -> bool {
        if self.pending.load(Ordering::Acquire) > 0 || self.live.receiver_count() > 0 {
            return false;
        }
        let state = self.state();
        state.publisher.is_none() && state.viewers.is_empty()
    }

    /// Marks a request negotiating in this room until `Pending` is dropped.
    /// Called under the relay's room map lock, so the sweeper cannot free
    /// the room in between.
    pub(crate) fn begin_request(self: &Arc<Self>) -> Pending {
        self.pending.fetch_add(1, Ordering::AcqRel);
        Pending(self.clone())
    }

    fn state(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding the lock leaves consistent data (every update
        // is a single assignment or map operation), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn subscribe_live(&self) -> watch::Receiver<bool> {
        self.live.subscribe()
    }

    fn set_live(&self, on: bool) {
        if self.live.send_replace(on) != on {
            self.live_changed.notify_one();
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        *self.live.borrow()
    }

    pub(crate) fn tracks(&self) -> (Arc<FanoutTrack>, Arc<FanoutTrack>) {
        let state = self.state();
        (state.audio.clone(), state.video.clone())
    }

    pub(crate) fn track(&self, kind: Kind) -> Arc<FanoutTrack> {
        let state = self.state();
        match kind {
            Kind::Audio => state.audio.clone(),
            Kind::Video => state.video.clone(),
        }
    }

    /// The room's video codec and whether anyone is watching it.
    pub(crate) fn video_codec(&self) -> (Codec, bool) {
        let state = self.state();
        (state.video_codec.clone(), !state.viewers.is_empty())
    }

    pub(crate) fn viewer_count(&self) -> usize {
        self.viewer_count.load(Ordering::Relaxed)
    }

    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
    }

    pub(crate) fn next_generation(&self) -> u64 {
        // Reserved before negotiation so handlers can carry it; only the
        // publisher installed last becomes current.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes `publisher` the room's publisher. Returns the replaced publisher
    /// (to be closed) and the viewer senders to move to a new video track
    /// when the codec changed.
    // The refused publisher comes back whole so the caller can close it; this runs once per
    // WHIP, so its size on the error path costs nothing.
    #[allow(clippy::result_large_err)]
    pub(crate) fn install_publisher(
        &self,
        publisher: Publisher,
        video_codec: Option<Codec>,
    ) -> Result<(Option<Publisher>, Vec<TrackSwap>), (ApiError, Publisher)> {
        let mut state = self.state();
        if state.ended {
            return Err((ApiError::SessionEnded, publisher));
        }
        let mut swaps = Vec::new();
        if let Some(codec) = video_codec.filter(|c| *c != state.video_codec) {
            let track = Arc::new(FanoutTrack::video(
                codec.capability(),
                state.video.stream_id(),
                self.selections.clone(),
            ));
            tracing::info!(session = %self.session, codec = %codec.mime_type, fmtp = %codec.fmtp, "room video codec changes");
            swaps = state
                .viewers
                .values()
                .filter_map(|v| v.video.clone())
                .map(|sender| (sender, track.clone()))
                .collect();
            state.video = track;
            state.video_codec = codec;
        }
        self.generation
            .store(publisher.generation, Ordering::Release);
        for selection in self.selections.all() {
            selection.carry_over(&state.layers, &publisher.layers);
        }
        state.layers = publisher.layers.clone();
        let old = state.publisher.replace(publisher);
        // Live again once the new publisher's first packet arrives.
        self.set_live(false);
        metrics::publishers(&self.session, 1);
        Ok((old, swaps))
    }

    /// Removes the publisher `id` if it is still the current one.
    pub(crate) fn remove_publisher(&self, id: &str) -> Option<Publisher> {
        let mut state = self.state();
        if state.publisher.as_ref().is_none_or(|p| p.id != id) {
            return None;
        }
        let old = state.publisher.take();
        // Stop the old forwarding loops even before their connection closes.
        self.generation.store(0, Ordering::Release);
        self.set_live(false);
        metrics::publishers(&self.session, 0);
        self.idle.notify_one();
        old
    }

    /// Marks the room live when the current publisher's media arrives.
    pub(crate) fn media_arrived(&self, generation: u64) {
        if self.is_current(generation) && !self.is_live() {
            self.set_live(true);
            tracing::info!(session = %self.session, "publisher live");
        }
    }

    /// Adds a viewer; returns the swap needed if the room's video track
    /// changed while the viewer was negotiating.
    pub(crate) fn add_viewer(
        &self,
        viewer: Viewer,
        bound_video: &Arc<FanoutTrack>,
    ) -> Result<Option<TrackSwap>, (ApiError, Box<Viewer>)> {
        let mut state = self.state();
        if state.ended {
            return Err((ApiError::SessionEnded, Box::new(viewer)));
        }
        let swap = match &viewer.video {
            Some(sender) if !Arc::ptr_eq(bound_video, &state.video) => {
                Some((sender.clone(), state.video.clone()))
            }
            _ => None,
        };
        state.viewers.insert(viewer.id.clone(), viewer);
        self.viewer_count
            .store(state.viewers.len(), Ordering::Relaxed);
        metrics::viewers(&self.session, state.viewers.len());
        Ok(swap)
    }

    pub(crate) fn remove_viewer(&self, id: &str) -> Option<Viewer> {
        let mut state = self.state();
        let viewer = state.viewers.remove(id)?;
        if let Some(ssrc) = viewer.video_ssrc {
            self.selections.remove(ssrc);
        }
        self.viewer_count
            .store(state.viewers.len(), Ordering::Relaxed);
        metrics::viewers(&self.session, state.viewers.len());
        self.idle.notify_one();
        Some(viewer)
    }

    /// Whether the room has a publisher (a WHIP one or an edge's pull).
    pub(crate) fn has_any_publisher(&self) -> bool {
        self.state().publisher.is_some()
    }

    /// The origin this room's stream is pulled from, if it is an edge's pull.
    pub(crate) fn pulled_from(&self) -> Option<String> {
        self.state()
            .publisher
            .as_ref()
            .and_then(|p| p.pulled.as_ref().map(|pulled| pulled.whep_url.clone()))
    }

    /// Whether a WHIP publisher of this node sends media (this node is the origin).
    pub(crate) fn is_origin_live(&self) -> bool {
        self.is_live()
            && self
                .state()
                .publisher
                .as_ref()
                .is_some_and(|p| p.pulled.is_none())
    }

    /// An edge's pull with nobody left to watch it: taken out, for the caller to close.
    pub(crate) fn take_unwatched_pull(&self) -> Option<Publisher> {
        let mut state = self.state();
        // A viewer still negotiating (its pull set up just for it) counts as watching.
        let unwatched = self.pending.load(Ordering::Acquire) == 0
            && state.viewers.is_empty()
            && state.publisher.as_ref().is_some_and(|p| p.pulled.is_some());
        if !unwatched {
            return None;
        }
        self.generation.store(0, Ordering::Release);
        let publisher = state.publisher.take();
        drop(state);
        self.set_live(false);
        metrics::publishers(&self.session, 0);
        publisher
    }

    pub(crate) fn has_publisher(&self, id: &str) -> bool {
        self.state().publisher.as_ref().is_some_and(|p| p.id == id)
    }

    pub(crate) fn peer(&self, id: &str) -> Option<(Arc<RTCPeerConnection>, PatchLock)> {
        let state = self.state();
        match &state.publisher {
            Some(p) if p.id == id => Some((p.pc.clone(), p.patching.clone())),
            _ => state
                .viewers
                .get(id)
                .map(|v| (v.pc.clone(), v.patching.clone())),
        }
    }

    /// Ends the room: no more publishers or viewers; returns everything to close.
    pub(crate) fn end(&self) -> (Option<Publisher>, Vec<Viewer>) {
        let mut state = self.state();
        state.ended = true;
        self.generation.store(0, Ordering::Release);
        self.set_live(false);
        let publisher = state.publisher.take();
        let viewers: Vec<Viewer> = state.viewers.drain().map(|(_, v)| v).collect();
        for ssrc in viewers.iter().filter_map(|v| v.video_ssrc) {
            self.selections.remove(ssrc);
        }
        self.viewer_count.store(0, Ordering::Relaxed);
        metrics::publishers(&self.session, 0);
        metrics::viewers(&self.session, 0);
        (publisher, viewers)
    }

    pub(crate) fn audio_rewriter(&self) -> MutexGuard<'_, StreamRewriter> {
        self.audio_rewriter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The layers of a new publisher announcing `rids` (none: one layer).
    pub(crate) fn new_layers(&self, rids: &[String]) -> Arc<Layers> {
        Layers::new(rids, self.keyframe_min_interval)
    }

    /// The current (or last) publisher's layers.
    pub(crate) fn layers(&self) -> Arc<Layers> {
        self.state().layers.clone()
    }

    /// The layer selection of the viewer whose video sender has `ssrc`.
    pub(crate) fn selection(&self, ssrc: u32) -> Arc<Selection> {
        self.selections.get_or_create(ssrc)
    }

    /// Drops the selection of a viewer that never joined (its negotiation failed).
    pub(crate) fn forget_selection(&self, ssrc: u32) {
        self.selections.remove(ssrc);
    }

    /// Where viewer `id` stands among the layers (`None`: no such viewer, or no video).
    pub(crate) fn layer_state(&self, id: &str) -> Option<(Arc<Selection>, Arc<Layers>)> {
        let state = self.state();
        let ssrc = state.viewers.get(id)?.video_ssrc?;
        Some((self.selections.get_or_create(ssrc), state.layers.clone()))
    }

    /// Asks the publisher for a keyframe of layer `source` (`None`: its top layer, the one
    /// recorded and pulled), coalesced by that layer's gate.
    pub(crate) fn request_keyframe(self: &Arc<Self>, reason: KeyframeSource, source: Option<u64>) {
        let Some((pc, layer)) = self.publisher_layer(source) else {
            // Nobody to ask; a new publisher starts with a keyframe anyway.
            return;
        };
        match layer.keyframes.request(Instant::now()) {
            Decision::SendNow => {
                metrics::keyframe_request(reason, true);
                tokio::spawn(async move { send_pli(&pc, &layer).await });
            }
            Decision::SendAfter(delay) => {
                metrics::keyframe_request(reason, true);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    layer.keyframes.deferred_sent(Instant::now());
                    send_pli(&pc, &layer).await;
                });
            }
            Decision::Suppressed => metrics::keyframe_request(reason, false),
        }
    }

    /// The publisher's connection and its layer `source` (or top layer), once its SSRC is known.
    fn publisher_layer(&self, source: Option<u64>) -> Option<(Arc<RTCPeerConnection>, Arc<Layer>)> {
        let state = self.state();
        let publisher = state.publisher.as_ref()?;
        let layer = match source {
            Some(source) => publisher.layers.by_source(source)?,
            None => publisher.layers.top(),
        };
        (layer.ssrc.load(Ordering::Relaxed) != 0).then(|| (publisher.pc.clone(), layer.clone()))
    }
}

async fn send_pli(pc: &RTCPeerConnection, layer: &Layer) {
    let pli = PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc: layer.ssrc.load(Ordering::Relaxed),
    };
    if let Err(err) = pc.write_rtcp(&[Box::new(pli)]).await {
        tracing::debug!(error = %err, "sending a PLI");
    }
}
