//! This node's fan-out: one channel per session that has local clients. The channel's pump
//! reads the session's events from the broker once and hands each to every local socket,
//! flushes coalesced vote counts, keeps the viewer count and the video state (both as the
//! broker says: every node sees the same), and ends this node's video of a session when it
//! forwards the event that ended it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Mutex, Notify, broadcast};

use crate::broker::lock;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::broker::{Broker, BrokerError, Replay};
use crate::model::{SessionId, SessionState};
use crate::protocol::{Event, ServerMsg, VideoState, encode};

/// What a pump calls when it forwards the event that ended its session: this node's relay ends
/// the session's video (idempotent; it must not block the pump).
pub type SessionEnded = Arc<dyn Fn(SessionId) + Send + Sync>;

/// How often changed vote counts go out: a few updates a second, not one per vote.
pub const VOTE_FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How often this node reports its viewers and learns the total.
pub const VIEWERS_EVERY: Duration = Duration::from_secs(1);

/// What the pump hands to the sockets of a session.
#[derive(Debug, Clone)]
pub enum Frame {
    Event(Arc<Event>),
    /// A `viewers` or `video` message, already encoded; not part of the log.
    State(Arc<StateMsg>),
    /// The pump lost events it could not recover: every socket must send a fresh snapshot.
    Resync,
}

/// A `viewers` or `video` message, encoded once for every socket. Its `seq` is the last event
/// the pump handed out; a socket whose snapshot is newer (the pump has not forwarded an event
/// since that snapshot, or it resynced) sends it with its own `seq` instead, so the message
/// never carries a `seq` below what the client already has.
#[derive(Debug, Clone)]
pub struct StateMsg {
    msg: ServerMsg,
    text: Utf8Bytes,
}

impl StateMsg {
    fn new(msg: ServerMsg) -> StateMsg {
        let text = encode(&msg).into();
        StateMsg { msg, text }
    }

    /// The message as a socket that has had every event up to `sent` sends it.
    pub fn text_for(&self, sent: u64) -> Utf8Bytes {
        let mut msg = match &self.msg {
            ServerMsg::Viewers { seq, .. } | ServerMsg::Video { seq, .. } if *seq < sent => {
                self.msg.clone()
            }
            _ => return self.text.clone(),
        };
        if let ServerMsg::Viewers { seq, .. } | ServerMsg::Video { seq, .. } = &mut msg {
            *seq = sent;
        }
        encode(&msg).into()
    }
}

pub struct Hub {
    broker: Arc<dyn Broker>,
    node: Uuid,
    queue: usize,
    /// One slot per session with local sockets. A std mutex, held only to find or add a slot and
    /// never across an await: the broker's subscribe happens under the session's own slot lock,
    /// so a stalled Redis delays only the sessions that start a channel, never a join to a
    /// session whose channel runs.
    channels: StdMutex<HashMap<SessionId, Arc<Slot>>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    ended: SessionEnded,
}

/// Where a session's channel is found, or started by the first socket that needs it.
type Slot = Mutex<Weak<Channel>>;

/// The local fan-out of one session. Dropping the last handle stops its pump.
pub struct Channel {
    pub session: SessionId,
    tx: broadcast::Sender<Frame>,
    local: AtomicU64,
    viewers: Arc<AtomicU64>,
    video_live: Arc<AtomicBool>,
    /// Makes the pump read the video state now rather than at its next report.
    video_changed: Arc<Notify>,
    _stop: DropGuard,
}

impl Channel {
    pub fn video(&self) -> VideoState {
        if self.video_live.load(Ordering::Relaxed) {
            VideoState::Live
        } else {
            VideoState::Waiting
        }
    }

    /// The session's total viewers over all nodes, as last reported.
    pub fn viewers(&self) -> u64 {
        self.viewers.load(Ordering::Relaxed)
    }

    pub fn local_connections(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

/// Whether a socket counts as one of the session's viewers: patients do, staff (expert,
/// moderators, host, a venue screen's operator) do not, so the audience figure is the audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Viewer,
    Staff,
}

/// One socket's place in a channel; a viewer's leaving is counted when it drops.
pub struct Membership {
    pub channel: Arc<Channel>,
    pub frames: broadcast::Receiver<Frame>,
    audience: Audience,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.audience == Audience::Viewer {
            self.channel.local.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Hub {
    pub fn new(
        broker: Arc<dyn Broker>,
        queue: usize,
        cancel: CancellationToken,
        ended: SessionEnded,
    ) -> Hub {
        Hub {
            broker,
            node: Uuid::now_v7(),
            queue,
            channels: StdMutex::default(),
            cancel,
            tasks: TaskTracker::new(),
            ended,
        }
    }

    /// Joins the local channel of a session, starting its pump if it is the first socket here.
    /// Every event the broker stores after this returns reaches the returned receiver.
    pub async fn join(
        &self,
        session: SessionId,
        audience: Audience,
    ) -> Result<Membership, BrokerError> {
        let slot = self.slot(session);
        // Held across the subscribe so that two sockets joining a quiet session at once do not
        // start two pumps; it is this session's lock only.
        let mut current = slot.lock().await;
        if let Some(channel) = current.upgrade() {
            return Ok(Self::member(channel, audience));
        }
        let live = self.broker.subscribe(session).await?;
        let (tx, _) = broadcast::channel(self.queue);
        let stop = self.cancel.child_token();
        let viewers = Arc::new(AtomicU64::new(0));
        // Unknown while the broker cannot say: the pump asks again at its next report.
        let live_now = self.broker.video_live(session).await.unwrap_or(false);
        let video_live = Arc::new(AtomicBool::new(live_now));
        let video_changed = Arc::new(Notify::new());
        let channel = Arc::new(Channel {
            session,
            tx: tx.clone(),
            local: AtomicU64::new(0),
            viewers: viewers.clone(),
            video_live: video_live.clone(),
            video_changed: video_changed.clone(),
            _stop: stop.clone().drop_guard(),
        });
        let pump = Pump {
            broker: self.broker.clone(),
            node: self.node,
            session,
            tx,
            local: Arc::downgrade(&channel),
            viewers,
            video_live,
            ended: self.ended.clone(),
            last: None,
        };
        self.tasks.spawn(
            pump.run(live, video_changed, stop)
                .instrument(tracing::info_span!("pump", %session)),
        );
        *current = Arc::downgrade(&channel);
        Ok(Self::member(channel, audience))
    }

    /// The session's slot, added if it has none; slots of sessions that no socket of this node
    /// uses any more are dropped on the way, so the map stays as large as the live sessions.
    fn slot(&self, session: SessionId) -> Arc<Slot> {
        let mut channels = lock(&self.channels);
        if let Some(slot) = channels.get(&session) {
            return slot.clone();
        }
        // A slot held only by the map has no join in progress (joins hold a clone), so its lock
        // is free and a dead channel in it stays dead.
        channels.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |c| c.strong_count() > 0)
        });
        channels.entry(session).or_default().clone()
    }

    fn member(channel: Arc<Channel>, audience: Audience) -> Membership {
        if audience == Audience::Viewer {
            channel.local.fetch_add(1, Ordering::Relaxed);
        }
        let frames = channel.tx.subscribe();
        Membership {
            channel,
            frames,
            audience,
        }
    }

    /// This node's id in the broker's per-node reports (viewers, video).
    pub fn node(&self) -> Uuid {
        self.node
    }

    /// The session's viewer total if this node has a channel for it.
    pub async fn viewers(&self, session: SessionId) -> Option<u64> {
        let slot = lock(&self.channels).get(&session)?.clone();
        // A slot that is busy is starting its channel: nobody is counted there yet.
        let channel = slot.try_lock().ok()?.upgrade()?;
        Some(channel.viewers())
    }

    /// This node's relay reported a change of the session's video to the broker: its pump reads
    /// the state now (the other nodes' pumps read it at their next report, within
    /// [`VIEWERS_EVERY`]).
    pub fn video_changed(&self, session: SessionId) {
        let Some(slot) = lock(&self.channels).get(&session).cloned() else {
            return;
        };
        if let Ok(current) = slot.try_lock()
            && let Some(channel) = current.upgrade()
        {
            channel.video_changed.notify_one();
        }
    }

    /// Waits for every pump to stop (after the cancel token fired).
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

struct Pump {
    broker: Arc<dyn Broker>,
    node: Uuid,
    session: SessionId,
    tx: broadcast::Sender<Frame>,
    local: Weak<Channel>,
    viewers: Arc<AtomicU64>,
    video_live: Arc<AtomicBool>,
    ended: SessionEnded,
    /// The last event handed to the sockets.
    last: Option<u64>,
}

impl Pump {
    async fn run(
        mut self,
        mut live: broadcast::Receiver<Arc<Event>>,
        video_changed: Arc<Notify>,
        stop: CancellationToken,
    ) {
        let mut votes = tokio::time::interval(VOTE_FLUSH_EVERY);
        votes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut presence = tokio::time::interval(VIEWERS_EVERY);
        presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                received = live.recv() => match received {
                    Ok(event) => self.forward(event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "pump lagged behind the broker; catching up");
                        self.catch_up(None).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::warn!("broker closed the session's stream");
                        break;
                    }
                },
                _ = votes.tick() => {
                    if let Err(e) = self.broker.flush_votes(self.session).await {
                        tracing::debug!(error = %e, "vote flush failed; retrying next tick");
                    }
                }
                _ = presence.tick() => {
                    self.report_viewers().await;
                    self.read_video().await;
                }
                _ = video_changed.notified() => self.read_video().await,
            }
        }
        // Stop being counted at once rather than when the report expires.
        let _ = self.broker.report_viewers(self.session, self.node, 0).await;
    }

    async fn forward(&mut self, event: Arc<Event>) {
        match self.last {
            Some(last) if event.seq <= last => return,
            Some(last) if event.seq > last + 1 => {
                self.catch_up(Some(event.seq)).await;
                if self.last.is_some_and(|l| event.seq <= l) {
                    return;
                }
            }
            _ => {}
        }
        self.last = Some(event.seq);
        self.ends_session(&event);
        let _ = self.tx.send(Frame::Event(event));
    }

    /// Every node that forwards the end of a session ends its own video of it.
    fn ends_session(&self, event: &Event) {
        if event.ends_session() {
            (self.ended)(self.session);
        }
    }

    /// Fills a gap from the broker's log; when that is impossible, every socket resyncs.
    async fn catch_up(&mut self, before: Option<u64>) {
        let replay = match self.last {
            Some(last) => self.broker.replay(self.session, last).await,
            None => Ok(Replay::TooOld),
        };
        match replay {
            Ok(Replay::Events { events, .. }) => {
                for event in events {
                    if before.is_some_and(|b| event.seq >= b) {
                        break;
                    }
                    self.last = Some(event.seq);
                    self.ends_session(&event);
                    let _ = self.tx.send(Frame::Event(event));
                }
            }
            Ok(Replay::TooOld) | Err(_) => {
                self.last = None;
                let _ = self.tx.send(Frame::Resync);
                // The end of the session may be among what was lost.
                if let Ok(Some(session)) = self.broker.session(self.session).await
                    && session.state == SessionState::Ended
                {
                    (self.ended)(self.session);
                }
            }
        }
    }

    /// The video state as the broker says (a failed read changes nothing).
    async fn read_video(&mut self) {
        match self.broker.video_live(self.session).await {
            Ok(live) => self.video_changed(live),
            Err(e) => tracing::debug!(error = %e, "video state read failed"),
        }
    }

    fn video_changed(&mut self, live: bool) {
        if self.video_live.swap(live, Ordering::Relaxed) == live {
            return;
        }
        let msg = ServerMsg::Video {
            seq: self.last.unwrap_or(0),
            state: if live {
                VideoState::Live
            } else {
                VideoState::Waiting
            },
        };
        let _ = self.tx.send(Frame::State(Arc::new(StateMsg::new(msg))));
    }

    async fn report_viewers(&mut self) {
        let local = self.local.upgrade().map_or(0, |c| c.local_connections());
        match self
            .broker
            .report_viewers(self.session, self.node, local)
            .await
        {
            Ok(total) if total != self.viewers.swap(total, Ordering::Relaxed) => {
                let msg = ServerMsg::Viewers {
                    seq: self.last.unwrap_or(0),
                    count: total,
                };
                let _ = self.tx.send(Frame::State(Arc::new(StateMsg::new(msg))));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "viewer report failed"),
        }
    }
}
