//! The relay handle: rooms by session, and the operations behind the HTTP
//! routes (negotiate, trickle, delete). Everything WebRTC the HTTP edge needs
//! goes through here; `http` never sees a peer connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use webrtc::peer_connection::RTCPeerConnection;

use crate::auth::{Access, AuthError, Authorizer, Origin};
use crate::budget::{Budgets, Caps};
use crate::config::{IceServerEntry, RelayConfig, is_turn_url};
use crate::engine::{self, Engine, close_pc};
use crate::error::{ApiError, SignalingError};
use crate::keyframe::KeyframeSource;
use crate::layer_choice::Preference;
use crate::layers::LayerState;
use crate::record::Recorders;
use crate::room::{PatchLock, Pending, Room};
use crate::{edge, publisher, viewer};
use crate::{metrics, sdp};

/// The relay: cheap to clone, every clone shares the same rooms.
#[derive(Clone)]
pub struct Relay {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub config: RelayConfig,
    pub auth: Arc<dyn Authorizer>,
    engine: Engine,
    /// Rooms live from their first use until `end_session` (or shutdown),
    /// or until nothing needs them any more (see [`Room::is_idle`]): a
    /// socket of an ended session, or a viewer that came and went, must not
    /// leave a room behind. A plain mutex: lookups are short and never await.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// Rooms ping it when they may have become idle; the sweeper frees them.
    idle: Arc<Notify>,
    /// A room's publisher went live or stopped ([`Relay::live_changed`]).
    live_changed: Arc<Notify>,
    budgets: Arc<Budgets>,
    closing: AtomicBool,
    /// One recorder per recorded session; `None` when recording is off.
    recorders: Option<Recorders>,
    /// For an edge's pulls from other nodes (`crate::edge`).
    http: reqwest::Client,
}

/// How often idle rooms are looked for even without a ping: a room's last
/// watcher (a WebSocket channel of the host) leaves without telling it.
const IDLE_SWEEP: Duration = Duration::from_secs(5);

/// Which side of a session a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Publisher,
    Viewer,
}

impl Role {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Role::Publisher => "whip",
            Role::Viewer => "whep",
        }
    }
}

/// A negotiated peer: what the 201 response carries.
pub(crate) struct Created {
    pub resource_id: String,
    pub answer: String,
    /// The answer's ICE session (its `ETag`, see [`Relay::patch`]).
    pub ice_session: String,
    pub publisher_live: bool,
}

impl Relay {
    /// Builds the relay; fails only on an unusable configuration.
    /// Must be called inside a tokio runtime (it starts the room sweeper).
    pub fn new(config: RelayConfig, auth: Arc<dyn Authorizer>) -> Result<Relay, SignalingError> {
        validate(&config)?;
        // webrtc's DTLS asks rustls for the process-wide provider; once another
        // crate (object_store's S3 client) enables aws-lc-rs next to ring, rustls
        // cannot pick one and panics. Ring, as DTLS was built with; a host that
        // installed its own first keeps it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let engine = Engine::new(&config)?;
        let budgets = Budgets::new(Caps {
            per_token: config.max_viewers_per_token,
            per_address: config.max_viewers_per_address,
            per_session: config.max_viewers_per_session,
        });
        let recorders = config.recording.clone().map(Recorders::new);
        let shared = Arc::new(Shared {
            config,
            recorders,
            auth,
            engine,
            rooms: Mutex::new(HashMap::new()),
            idle: Arc::new(Notify::new()),
            live_changed: Arc::new(Notify::new()),
            http: reqwest::Client::new(),
            budgets,
            closing: AtomicBool::new(false),
        });
        metrics::rooms(0);
        tokio::spawn(sweep_idle_rooms(Arc::downgrade(&shared)));
        Ok(Relay { shared })
    }

    /// Rooms this node holds (sessions with a publisher, viewers, or watchers).
    pub fn room_count(&self) -> usize {
        self.shared.rooms().len()
    }

    /// Closes every peer connection of `session` (publisher and viewers).
    /// Later WHIP/WHEP requests get whatever the authorizer says.
    /// With recording on, the open segment is stored and the manifest marked
    /// ended (also a manifest another process left unended) before this returns.
    pub async fn end_session(&self, session: &str) {
        let room = self.shared.rooms().remove(session);
        metrics::rooms(self.shared.rooms().len());
        if let Some(room) = room {
            tracing::info!(session, "ending the session's video");
            close_room(&room).await;
        }
        if let Some(recorders) = &self.shared.recorders {
            recorders.end(session).await;
        }
    }

    /// What [`Relay::end_session`] does for what this node holds (its room, its recorder), for
    /// every node that learns of the end: a recording this node does not write is left alone.
    pub async fn end_local(&self, session: &str) {
        let room = self.shared.rooms().remove(session);
        metrics::rooms(self.shared.rooms().len());
        if let Some(room) = room {
            tracing::info!(session, "ending the session's video on this node");
            close_room(&room).await;
        }
        if let Some(recorders) = &self.shared.recorders {
            recorders.end_local(session).await;
        }
    }

    /// `true` while a publisher is sending media to `session`. Receivers see
    /// the sender dropped once the session is ended.
    /// The room lives while a receiver does, and is freed once every
    /// receiver is dropped and nobody publishes or views.
    pub fn publisher_live(&self, session: &str) -> watch::Receiver<bool> {
        self.shared.with_room(session, |room| room.subscribe_live())
    }

    /// Whether a publisher is sending media to `session` now. Unlike [`Relay::publisher_live`]
    /// this sets nothing up for a session nobody publishes to or watches.
    pub fn is_live(&self, session: &str) -> bool {
        self.shared
            .existing_room(session)
            .is_some_and(|room| *room.subscribe_live().borrow())
    }

    /// The sessions this node holds a room for, and whether a WHIP publisher of this node sends
    /// media to each (this node is then the session's origin; an edge's pull does not count).
    pub fn rooms_live(&self) -> Vec<(String, bool)> {
        self.shared
            .rooms()
            .iter()
            .map(|(session, room)| (session.clone(), room.is_origin_live()))
            .collect()
    }

    /// The sessions this node pulls from another node, with the origin's WHEP URL of each, and
    /// those whose viewers here wait with nobody to pull from (`""`: the pull failed, or its
    /// origin died), so that the caller points each at the session's origin ([`Relay::follow`]).
    pub fn pulls(&self) -> Vec<(String, String)> {
        let rooms: Vec<(String, Arc<Room>)> = self
            .shared
            .rooms()
            .iter()
            .map(|(s, r)| (s.clone(), r.clone()))
            .collect();
        rooms
            .into_iter()
            .filter_map(|(session, room)| match room.pulled_from() {
                Some(url) => Some((session, url)),
                None if room.viewer_count() > 0 && !room.has_any_publisher() => {
                    Some((session, String::new()))
                }
                None => None,
            })
            .collect()
    }

    /// The session's origin is now `origin`: a pull from elsewhere moves to it (viewers keep
    /// their sessions). Nothing changes for a session this node does not pull.
    pub async fn follow(&self, session: &str, origin: &Origin) {
        let Some(room) = self.shared.existing_room(session) else {
            return;
        };
        if room.viewer_count() == 0 {
            return;
        }
        match room.pulled_from() {
            Some(current) if current != origin.whep_url => {
                tracing::info!(session, from = %current, to = %origin.whep_url, "following the new origin");
                self.shared.pull(&room, origin).await;
            }
            None if !room.has_any_publisher() => {
                tracing::info!(session, to = %origin.whep_url, "pulling for the waiting viewers");
                self.shared.pull(&room, origin).await;
            }
            _ => {}
        }
    }

    /// Returns once a room's publisher went live or stopped since the last call returned (a
    /// change before the first call counts). For one waiter: the node's video reporter.
    pub async fn live_changed(&self) {
        self.shared.live_changed.notified().await;
    }

    /// Closes every peer connection of every session; later requests get 503.
    pub async fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let rooms: Vec<Arc<Room>> = self.shared.rooms().drain().map(|(_, r)| r).collect();
        metrics::rooms(0);
        let mut closing = JoinSet::new();
        for room in rooms {
            closing.spawn(async move { close_room(&room).await });
        }
        while closing.join_next().await.is_some() {}
        if let Some(recorders) = &self.shared.recorders {
            recorders.shutdown().await;
        }
    }

    pub(crate) async fn authorize(
        &self,
        session: &str,
        token: &str,
        role: Role,
    ) -> Result<(), ApiError> {
        let access = self.shared.auth.authorize(session, token).await?;
        match (role, access) {
            (Role::Publisher, Access::View) => Err(AuthError::Forbidden(
                "publishing needs the expert's token for this session".to_owned(),
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// The ICE servers a client should gather with, TURN ones with a credential minted for
    /// `user` (what the `Link` headers of WHIP/WHEP carry, for a client that has not asked yet).
    pub fn ice_servers(&self, user: &str) -> Vec<IceServerEntry> {
        let config = self.config();
        let credential = config.turn.as_ref().map(|turn| turn.mint(user));
        crate::config::ice_entries(&config.ice_servers, credential.as_ref())
    }

    pub(crate) fn config(&self) -> &RelayConfig {
        &self.shared.config
    }

    /// Negotiates a publisher or viewer from an SDP offer. `token` and
    /// `client` are what viewer budgets count.
    pub(crate) async fn create(
        &self,
        session: &str,
        role: Role,
        offer_sdp: String,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Created, ApiError> {
        let offer = sdp::parse_offer(&offer_sdp).map_err(ApiError::bad_sdp)?;
        if self.shared.closing.load(Ordering::SeqCst) {
            return Err(ApiError::Unavailable);
        }
        let slot = match role {
            Role::Viewer => Some(self.shared.budgets.take(session, token, client)?),
            Role::Publisher => None,
        };
        let room: Pending = self.shared.with_room(session, Room::begin_request);
        let engine = &self.shared.engine;
        let (resource_id, answer) = match (role, slot) {
            (Role::Viewer, Some(slot)) => {
                // Another node receives the expert: pull the stream once, before this viewer
                // negotiates, so it gets the stream's codec from the start.
                if !room.has_any_publisher()
                    && let Some(origin) = self.shared.auth.origin(session).await
                {
                    self.shared.pull(&room, &origin).await;
                }
                viewer::view(engine, &room, offer_sdp, &offer, slot).await?
            }
            _ => {
                let recorder = match &self.shared.recorders {
                    Some(recorders) if self.shared.auth.records(session).await => {
                        Some(recorders.recorder(session))
                    }
                    _ => None,
                };
                publisher::publish(engine, &room, offer_sdp, &offer, recorder).await?
            }
        };
        let ice_session = sdp::attribute_value(&answer, "ice-ufrag")
            .unwrap_or_default()
            .to_owned();
        Ok(Created {
            resource_id,
            answer,
            ice_session,
            // An edge's pull stands for an origin whose expert is live, media or not yet.
            publisher_live: room.is_live() || room.pulled_from().is_some(),
        })
    }

    /// Tears a resource down at once. `false` if there is no such resource.
    pub(crate) async fn delete(&self, session: &str, role: Role, resource: &str) -> bool {
        let Some(room) = self.shared.existing_room(session) else {
            return false;
        };
        match role {
            Role::Publisher => {
                let Some(publisher) = room.remove_publisher(resource) else {
                    return false;
                };
                tracing::info!(session, publisher = resource, "publisher deleted");
                close_pc(&publisher.pc, &publisher.id).await;
                true
            }
            Role::Viewer => {
                let Some(viewer) = room.remove_viewer(resource) else {
                    return false;
                };
                tracing::info!(session, viewer = resource, "viewer deleted");
                viewer.teardown().await;
                true
            }
        }
    }

    /// Applies a `PATCH` fragment (`application/trickle-ice-sdpfrag`) to a
    /// resource: trickled candidates or an ICE restart. `if_match` holds the
    /// entity tags of an `If-Match` header (`None`: absent or `*`); they are
    /// compared with the resource's ICE session under the resource's lock, so
    /// a fragment never lands in an ICE session it was not written for.
    pub(crate) async fn patch(
        &self,
        session: &str,
        role: Role,
        resource: &str,
        if_match: Option<&[String]>,
        fragment: &str,
    ) -> Result<Patch, ApiError> {
        let (pc, lock) = self
            .peer(session, role, resource)
            .ok_or(ApiError::ResourceNotFound)?;
        let _one_at_a_time = lock.lock().await;
        let current = ice_session(&pc).await?;
        if let Some(tags) = if_match
            && !tags.contains(&current)
        {
            return Err(ApiError::PreconditionFailed);
        }
        let patched = engine::patch(
            &pc,
            sdp::parse_fragment(fragment),
            self.shared.engine.allow_loopback,
        )
        .await?;
        let ice_session = match &patched {
            engine::Patched::Trickled => current,
            engine::Patched::Restarted(_) => {
                tracing::info!(session, resource, "ICE restarted");
                // The viewer lost what was sent to its old address, long enough that resends are
                // refused (see `nack`): its picture comes back with the next keyframe, so ask
                // for one now rather than when its decoder gives up.
                if role == Role::Viewer
                    && let Some(room) = self.shared.existing_room(session)
                    && let Some((selection, _)) = room.layer_state(resource)
                {
                    room.request_keyframe(KeyframeSource::IceRestart, selection.current());
                }
                ice_session(&pc).await?
            }
        };
        Ok(Patch {
            restarted: match patched {
                engine::Patched::Trickled => None,
                engine::Patched::Restarted(fragment) => Some(fragment),
            },
            ice_session,
        })
    }

    /// A viewer's layer selection (`…/layer`): sets its preference if given, and says where
    /// it stands among the publisher's layers.
    pub(crate) fn layer(
        &self,
        session: &str,
        resource: &str,
        prefer: Option<Preference>,
    ) -> Result<LayerState, ApiError> {
        let room = self
            .shared
            .existing_room(session)
            .ok_or(ApiError::ResourceNotFound)?;
        let (selection, layers) = room
            .layer_state(resource)
            .ok_or(ApiError::ResourceNotFound)?;
        let now = Instant::now();
        if let Some(prefer) = prefer {
            tracing::info!(session, viewer = resource, ?prefer, "layer preference");
            selection.set_preference(prefer);
            if let Some(target) = selection.decide(&layers, now) {
                room.request_keyframe(KeyframeSource::LayerSwitch, Some(target));
            }
        }
        Ok(selection.state(&layers, now))
    }

    fn peer(
        &self,
        session: &str,
        role: Role,
        resource: &str,
    ) -> Option<(Arc<RTCPeerConnection>, PatchLock)> {
        let room = self.shared.existing_room(session)?;
        let is_publisher = room.has_publisher(resource);
        if is_publisher != (role == Role::Publisher) {
            return None;
        }
        room.peer(resource)
    }
}

/// What a `PATCH` did.
pub(crate) struct Patch {
    /// After an ICE restart: the relay's new credentials and candidates.
    pub restarted: Option<String>,
    /// The resource's ICE session now (its `ETag`).
    pub ice_session: String,
}

/// The name of `pc`'s current ICE session, the entity tag of its resource:
/// the relay's ICE ufrag, which every ICE restart replaces (RFC 9725 §4.3.1
/// asks for a tag unique to each ICE session).
async fn ice_session(pc: &RTCPeerConnection) -> Result<String, ApiError> {
    let local = pc
        .local_description()
        .await
        .ok_or(ApiError::ResourceNotFound)?;
    sdp::attribute_value(&local.sdp, "ice-ufrag")
        .map(str::to_owned)
        .ok_or(ApiError::ResourceNotFound)
}

impl Shared {
    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the session's room, created if needed, under the map's
    /// lock: what `f` registers (a watcher, a pending request) is seen by
    /// the sweeper before it can judge the room idle.
    fn with_room<R>(&self, session: &str, f: impl FnOnce(&Arc<Room>) -> R) -> R {
        let mut rooms = self.rooms();
        let room = rooms.entry(session.to_owned()).or_insert_with(|| {
            Room::new(
                session,
                self.config.keyframe_min_interval,
                self.idle.clone(),
                self.live_changed.clone(),
            )
        });
        let out = f(room);
        metrics::rooms(rooms.len());
        out
    }

    /// Pulls `room`'s session from `origin` unless a pull is being set up already; a failure is
    /// logged (the viewers wait for the video as for an absent expert).
    async fn pull(&self, room: &Arc<Room>, origin: &Origin) {
        if room.pulling.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(err) = edge::pull(&self.engine, &self.http, room, origin).await {
            tracing::warn!(session = %room.session, origin = %origin.whep_url, error = %err, "cannot pull the session");
        }
        room.pulling.store(false, Ordering::Release);
    }

    fn free_idle_rooms(&self) {
        // A pull nobody here watches any more is released first.
        let rooms: Vec<Arc<Room>> = self.rooms().values().cloned().collect();
        for room in rooms {
            if let Some(pull) = room.take_unwatched_pull() {
                tracing::info!(session = %room.session, "last viewer gone: pull released");
                let http = self.http.clone();
                tokio::spawn(async move { edge::release(&http, pull).await });
            }
        }
        let mut rooms = self.rooms();
        rooms.retain(|session, room| {
            let idle = room.is_idle();
            if idle {
                tracing::debug!(session, "idle room freed");
            }
            !idle
        });
        metrics::rooms(rooms.len());
    }

    fn existing_room(&self, session: &str) -> Option<Arc<Room>> {
        self.rooms().get(session).cloned()
    }
}

/// Frees idle rooms when a room says it may be idle, and every [`IDLE_SWEEP`];
/// ends with the relay.
async fn sweep_idle_rooms(shared: Weak<Shared>) {
    let Some(idle) = shared.upgrade().map(|s| s.idle.clone()) else {
        return;
    };
    loop {
        let _ = tokio::time::timeout(IDLE_SWEEP, idle.notified()).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.free_idle_rooms();
    }
}

/// Refuses configurations that would hand out unusable or unsafe ICE servers.
fn validate(config: &RelayConfig) -> Result<(), SignalingError> {
    let turn_urls = config
        .ice_servers
        .iter()
        .flat_map(|s| &s.urls)
        .any(|u| is_turn_url(u));
    if turn_urls && config.turn.is_none() {
        return Err(SignalingError::Config(
            "TURN URLs need a shared secret (--turn-secret-file, coturn's static-auth-secret) \
             so each client gets a short-lived credential; static TURN passwords are not supported"
                .to_owned(),
        ));
    }
    if config.turn.as_ref().is_some_and(|t| t.ttl.is_zero()) {
        return Err(SignalingError::Config(
            "the TURN credential lifetime must be positive".to_owned(),
        ));
    }
    for (name, value) in [
        ("max_viewers_per_token", config.max_viewers_per_token),
        ("max_viewers_per_address", config.max_viewers_per_address),
        ("max_viewers_per_session", config.max_viewers_per_session),
    ] {
        if value == 0 {
            return Err(SignalingError::Config(format!("{name} must be at least 1")));
        }
    }
    Ok(())
}

async fn close_room(room: &Room) {
    let (publisher, viewers) = room.end();
    let mut closing = JoinSet::new();
    if let Some(publisher) = publisher {
        closing.spawn(async move { close_pc(&publisher.pc, &publisher.id).await });
    }
    for viewer in viewers {
        closing.spawn(viewer.teardown());
    }
    while closing.join_next().await.is_some() {}
}
