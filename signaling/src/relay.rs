//! The relay handle: rooms by session, and the operations behind the HTTP
//! routes (negotiate, trickle, delete). Everything WebRTC the HTTP edge needs
//! goes through here; `http` never sees a peer connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::{Access, AuthError, Authorizer};
use crate::config::RelayConfig;
use crate::engine::{self, Engine, close_pc};
use crate::error::{ApiError, SignalingError};
use crate::room::Room;
use crate::sdp;
use crate::{publisher, viewer};

/// The relay: cheap to clone, every clone shares the same rooms.
#[derive(Clone)]
pub struct Relay {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub config: RelayConfig,
    pub auth: Arc<dyn Authorizer>,
    engine: Engine,
    /// Rooms live from their first use until `end_session` (or shutdown).
    /// A plain mutex: lookups are short and never await.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    closing: AtomicBool,
}

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
    pub publisher_live: bool,
}

impl Relay {
    /// Builds the relay; fails only on an unusable configuration.
    pub fn new(config: RelayConfig, auth: Arc<dyn Authorizer>) -> Result<Relay, SignalingError> {
        let engine = Engine::new(&config)?;
        Ok(Relay {
            shared: Arc::new(Shared {
                config,
                auth,
                engine,
                rooms: Mutex::new(HashMap::new()),
                closing: AtomicBool::new(false),
            }),
        })
    }

    /// Closes every peer connection of `session` (publisher and viewers).
    /// Later WHIP/WHEP requests get whatever the authorizer says.
    pub async fn end_session(&self, session: &str) {
        let room = self.shared.rooms().remove(session);
        if let Some(room) = room {
            tracing::info!(session, "ending the session's video");
            close_room(&room).await;
        }
    }

    /// `true` while a publisher is sending media to `session`. Receivers see
    /// the sender dropped once the session is ended.
    pub fn publisher_live(&self, session: &str) -> watch::Receiver<bool> {
        self.shared.room(session).subscribe_live()
    }

    /// Whether a publisher is sending media to `session` now. Unlike [`Relay::publisher_live`]
    /// this sets nothing up for a session nobody publishes to or watches.
    pub fn is_live(&self, session: &str) -> bool {
        self.shared
            .existing_room(session)
            .is_some_and(|room| *room.subscribe_live().borrow())
    }

    /// Closes every peer connection of every session; later requests get 503.
    pub async fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let rooms: Vec<Arc<Room>> = self.shared.rooms().drain().map(|(_, r)| r).collect();
        let mut closing = JoinSet::new();
        for room in rooms {
            closing.spawn(async move { close_room(&room).await });
        }
        while closing.join_next().await.is_some() {}
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

    pub(crate) fn config(&self) -> &RelayConfig {
        &self.shared.config
    }

    /// Negotiates a publisher or viewer from an SDP offer.
    pub(crate) async fn create(
        &self,
        session: &str,
        role: Role,
        offer_sdp: String,
    ) -> Result<Created, ApiError> {
        let offer = sdp::parse_offer(&offer_sdp).map_err(ApiError::bad_sdp)?;
        if self.shared.closing.load(Ordering::SeqCst) {
            return Err(ApiError::Unavailable);
        }
        let room = self.shared.room(session);
        let engine = &self.shared.engine;
        let (resource_id, answer) = match role {
            Role::Publisher => publisher::publish(engine, &room, offer_sdp, &offer).await?,
            Role::Viewer => viewer::view(engine, &room, offer_sdp, &offer).await?,
        };
        Ok(Created {
            resource_id,
            answer,
            publisher_live: room.is_live(),
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

    /// Whether `resource` is a live resource of this role in `session`.
    pub(crate) fn has_resource(&self, session: &str, role: Role, resource: &str) -> bool {
        self.peer(session, role, resource).is_some()
    }

    /// Trickle ICE: adds the candidates of an `application/trickle-ice-sdpfrag`
    /// body to the resource's peer connection.
    pub(crate) async fn trickle(
        &self,
        session: &str,
        role: Role,
        resource: &str,
        fragment: &str,
    ) -> Result<(), ApiError> {
        let pc = self
            .peer(session, role, resource)
            .ok_or(ApiError::ResourceNotFound)?;
        engine::add_remote_candidates(&pc, sdp::parse_fragment(fragment)).await
    }

    fn peer(
        &self,
        session: &str,
        role: Role,
        resource: &str,
    ) -> Option<Arc<webrtc::peer_connection::RTCPeerConnection>> {
        let room = self.shared.existing_room(session)?;
        let is_publisher = room.has_publisher(resource);
        if is_publisher != (role == Role::Publisher) {
            return None;
        }
        room.peer(resource)
    }
}

impl Shared {
    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Arc<Room>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(&self, session: &str) -> Arc<Room> {
        self.rooms()
            .entry(session.to_owned())
            .or_insert_with(|| Room::new(session, self.config.keyframe_min_interval))
            .clone()
    }

    fn existing_room(&self, session: &str) -> Option<Arc<Room>> {
        self.rooms().get(session).cloned()
    }
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
