//! One WebSocket connection: the first snapshot or resume, then requests in and events out.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tracing::Instrument;

use crate::AppState;
use crate::auth::Claims;
use crate::broker::Replay;
use crate::domain::{Actor, Command, Reply};
use crate::error::ApiError;
use crate::hub::{Frame, Membership};
use crate::metrics as m;
use crate::model::SessionId;
use crate::protocol::{
    Ack, ClientMsg, CloseCode, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, MAX_REQ_CHARS, ReqOnly, Request,
    ServerMsg, Snapshot, You, encode,
};

/// A socket that cannot take one message for this long is too slow to keep.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// tungstenite reads in chunks of this size; its default (128 KiB) would cost that much per idle
/// socket (see docs/architecture.md).
const READ_BUFFER: usize = 4 * 1024;
/// Bytes tungstenite may hold for a socket that is not draining before writes fail.
const MAX_WRITE_BUFFER: usize = 512 * 1024;
/// Bytes of frames gathered before tungstenite writes them out: a burst of events goes out in
/// one system call, while an idle socket keeps no more than this (plus one frame) of buffer.
const WRITE_BUFFER: usize = 4 * 1024;
/// Most queued events written with one flush.
const MAX_BATCH: u64 = 64;
/// Over-limit messages tolerated before the socket is closed as a flood.
const FLOOD_STRIKES: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    since: Option<u64>,
}

pub async fn upgrade(
    State(app): State<AppState>,
    Path(session): Path<SessionId>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = query
        .token
        .ok_or_else(|| ApiError::Unauthorized("missing token query parameter".into()))?;
    let claims = app.keys.verify(&token)?;
    claims.check_session(session)?;
    if app.broker.session(session).await?.is_none() {
        return Err(ApiError::NotFound("no such session".into()));
    }
    let permit = app
        .connections
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable("too many connections on this node".into()))?;
    let since = query.since;
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| {
            let span = tracing::info_span!("ws", %session, role = ?claims.role, user = %claims.sub);
            async move {
                let _permit = permit;
                let sockets = m::connections(claims.role);
                sockets.increment(1.0);
                Connection::new(app, session, claims)
                    .run(socket, since)
                    .await;
                sockets.decrement(1.0);
            }
            .instrument(span)
        }))
}

/// Why the loop ended, and so which close code the client gets.
type Stop = CloseCode;

struct Connection {
    app: AppState,
    session: SessionId,
    claims: Claims,
    actor: Actor,
    /// The highest event `seq` this socket has been given or skipped; nothing at or below it
    /// is sent again.
    sent: u64,
    limiter: DefaultDirectRateLimiter,
    strikes: u32,
    last_heard: Instant,
}

impl Connection {
    fn new(app: AppState, session: SessionId, claims: Claims) -> Self {
        let per_second =
            NonZeroU32::new(app.config.limits.messages_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        Connection {
            actor: claims.actor(),
            app,
            session,
            claims,
            sent: 0,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            strikes: 0,
            last_heard: Instant::now(),
        }
    }

    async fn run(mut self, socket: WebSocket, since: Option<u64>) {
        let (mut sink, mut stream) = socket.split();
        let stop = match self.app.hub.join(self.session).await {
            Ok(mut member) => match self.greet(&mut sink, &member, since).await {
                Ok(()) => self.serve(&mut sink, &mut stream, &mut member).await,
                Err(stop) => stop,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot join the session's channel");
                CloseCode::Internal
            }
        };
        tracing::debug!(code = stop as u16, "closing");
        let frame = CloseFrame {
            code: stop as u16,
            reason: Utf8Bytes::from_static(stop.reason()),
        };
        // A client too slow to read a close frame is not waited for.
        let _ = timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
        // Read what the client still sends until it answers the close, so that unread bytes
        // do not make the kernel reset the connection before the close frame arrives.
        if stop != CloseCode::TooSlow {
            let _ = timeout(Duration::from_secs(2), async {
                while let Some(Ok(msg)) = stream.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    /// Sends the first message: a resume with the missed events, or a snapshot.
    async fn greet(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        member: &Membership,
        since: Option<u64>,
    ) -> Result<(), Stop> {
        if let Some(since) = since {
            match self.app.broker.replay(self.session, since).await {
                Ok(Replay::Events { events, head }) => {
                    let resumed = encode(&ServerMsg::Resumed { since, seq: head });
                    self.send(sink, resumed.into()).await?;
                    for event in events {
                        if event.audience.includes(self.actor.role, self.actor.id) {
                            self.send(sink, event.frame.clone()).await?;
                        }
                    }
                    self.sent = head;
                    return Ok(());
                }
                Ok(Replay::TooOld) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "replay failed; sending a snapshot");
                }
            }
        }
        self.snapshot(sink, member).await
    }

    async fn snapshot(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        member: &Membership,
    ) -> Result<(), Stop> {
        let view = self
            .app
            .broker
            .view(self.session, self.actor.role, self.actor.id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read the session for a snapshot");
                CloseCode::Internal
            })?;
        self.sent = view.seq;
        let msg = ServerMsg::Snapshot(Snapshot {
            seq: view.seq,
            session: view.session,
            you: You {
                id: self.actor.id,
                role: self.actor.role,
                name: self.actor.name.clone(),
            },
            questions: view.questions,
            my_votes: view.my_votes,
            viewers: member.channel.viewers(),
            video: member.channel.video(),
        });
        self.send(sink, encode(&msg).into()).await
    }

    async fn serve(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        stream: &mut SplitStream<WebSocket>,
        member: &mut Membership,
    ) -> Stop {
        let ping_every = self.app.config.ping_interval;
        let idle_after = ping_every * 12 / 5;
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let expiry = sleep(self.claims.expires_in());
        tokio::pin!(expiry);
        let shutdown = self.app.cancel.clone();
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => Err(CloseCode::GoingAway),
                _ = &mut expiry => Err(CloseCode::TokenExpired),
                frame = member.frames.recv() => self.outgoing(sink, member, frame).await,
                incoming = stream.next() => match incoming {
                    Some(Ok(msg)) => self.incoming(sink, msg).await,
                    Some(Err(e)) => Err(read_error(&e)),
                    None => Err(CloseCode::Normal),
                },
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > idle_after {
                        Err(CloseCode::Idle)
                    } else {
                        self.send_message(sink, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(stop) = result {
                return stop;
            }
        }
    }

    /// Writes `first` and whatever else is already queued for this socket (up to
    /// [`MAX_BATCH`]) with one flush: one system call for a burst instead of one per event.
    async fn outgoing(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        member: &mut Membership,
        first: Result<Frame, RecvError>,
    ) -> Result<(), Stop> {
        let mut next = Some(first);
        let mut queued = 0u64;
        let deadline = Instant::now() + SEND_TIMEOUT;
        while let Some(frame) = next.take() {
            let text = match frame {
                Ok(Frame::Event(event)) => {
                    if event.seq <= self.sent {
                        None
                    } else {
                        self.sent = event.seq;
                        event
                            .audience
                            .includes(self.actor.role, self.actor.id)
                            .then(|| event.frame.clone())
                    }
                }
                Ok(Frame::State(state)) => Some(state.text_for(self.sent)),
                Ok(Frame::Resync) => {
                    self.flush(sink, deadline, queued).await?;
                    queued = 0;
                    self.snapshot(sink, member).await?;
                    None
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "socket fell behind its queue");
                    m::slow_disconnects().increment(1);
                    return Err(CloseCode::TooSlow);
                }
                Err(RecvError::Closed) => return Err(CloseCode::Internal),
            };
            if let Some(text) = text {
                written(timeout_at(deadline, sink.feed(Message::Text(text))).await)?;
                queued += 1;
            }
            if queued < MAX_BATCH {
                next = match member.frames.try_recv() {
                    Ok(frame) => Some(Ok(frame)),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                    Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                };
            }
        }
        self.flush(sink, deadline, queued).await
    }

    async fn flush(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        deadline: Instant,
        queued: u64,
    ) -> Result<(), Stop> {
        if queued == 0 {
            return Ok(());
        }
        m::messages_out().increment(queued);
        written(timeout_at(deadline, sink.flush()).await)
    }

    async fn incoming(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        msg: Message,
    ) -> Result<(), Stop> {
        self.last_heard = Instant::now();
        let text = match msg {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let err = ApiError::BadRequest("binary frames are not used; send JSON text".into());
                return self.reply(sink, &err.into_server_msg(None)).await;
            }
            Message::Close(_) => return Err(CloseCode::Normal),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        m::messages_in().increment(1);
        if self.limiter.check().is_err() {
            self.strikes += 1;
            if self.strikes > FLOOD_STRIKES {
                return Err(CloseCode::Flood);
            }
            let per_second = u64::from(self.app.config.limits.messages_per_second);
            let err = ApiError::rate_limited(
                "too many messages; slow down",
                Duration::from_millis(1000 / per_second),
            );
            return self
                .reply(sink, &err.into_server_msg(request_id(&text)))
                .await;
        }
        if text.len() > MAX_MESSAGE_BYTES {
            let err = ApiError::TooLarge(format!(
                "messages are limited to {MAX_MESSAGE_BYTES} bytes, got {}",
                text.len()
            ));
            return self
                .reply(sink, &err.into_server_msg(request_id(&text)))
                .await;
        }
        let ClientMsg { req, request } = match serde_json::from_str::<ClientMsg>(&text) {
            Ok(msg) => msg,
            Err(e) => {
                let err = ApiError::BadRequest(e.to_string());
                return self
                    .reply(sink, &err.into_server_msg(request_id(&text)))
                    .await;
            }
        };
        let req = req.map(|r| r.chars().take(MAX_REQ_CHARS).collect::<String>());
        let reply = match request {
            Request::Ping => ServerMsg::Pong { req },
            Request::Command(command) => self.execute(req, command).await,
        };
        self.reply(sink, &reply).await
    }

    async fn execute(&mut self, req: Option<String>, command: Command) -> ServerMsg {
        if matches!(command, Command::Ask { .. })
            && self.actor.role == crate::model::Role::Patient
            && let Err(not_until) = self.app.rate_limits.asks.check_key(&self.actor.id)
        {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            m::rate_limited().increment(1);
            let message = format!(
                "at most {} questions a minute; try again in {} s",
                self.app.config.limits.asks_per_minute,
                wait.as_secs() + 1
            );
            return ApiError::rate_limited(message, wait).into_server_msg(req);
        }
        let is_ask = matches!(command, Command::Ask { .. });
        let moves_status = m::moves_status(&command);
        match self
            .app
            .broker
            .apply(self.session, &self.actor, command)
            .await
        {
            Ok(ack) => {
                if is_ask {
                    m::questions("submitted").increment(1);
                }
                let (question, voted, session) = match ack.reply {
                    Reply::Question(q) => {
                        if moves_status {
                            m::questions(q.status.name()).increment(1);
                        }
                        (Some(q), None, None)
                    }
                    Reply::Voted(v) => (None, Some(v), None),
                    Reply::Session(s) => {
                        if s.state == crate::model::SessionState::Ended {
                            self.app.session_ended(s.id).await;
                        }
                        (None, None, Some(s))
                    }
                };
                ServerMsg::Ack(Ack {
                    req,
                    seq: ack.seq,
                    question,
                    voted,
                    session,
                })
            }
            Err(e) => ApiError::from(e).into_server_msg(req),
        }
    }

    async fn reply(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        msg: &ServerMsg,
    ) -> Result<(), Stop> {
        self.send(sink, encode(msg).into()).await
    }

    async fn send(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        text: Utf8Bytes,
    ) -> Result<(), Stop> {
        m::messages_out().increment(1);
        self.send_message(sink, Message::Text(text)).await
    }

    async fn send_message(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        msg: Message,
    ) -> Result<(), Stop> {
        written(timeout(SEND_TIMEOUT, sink.send(msg)).await)
    }
}

/// Whether a write finished. A timeout, or tungstenite refusing to buffer more than
/// MAX_WRITE_BUFFER bytes for a socket that does not drain, both mean the client is too slow;
/// any other error means the socket is gone, and the same code lets the client resume.
fn written(
    result: Result<Result<(), axum::Error>, tokio::time::error::Elapsed>,
) -> Result<(), Stop> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "send failed");
            m::slow_disconnects().increment(1);
            Err(CloseCode::TooSlow)
        }
        Err(_) => {
            m::slow_disconnects().increment(1);
            Err(CloseCode::TooSlow)
        }
    }
}

/// The `req` of a message that could not be parsed as a request, if it can be read at all.
pub fn request_id(text: &str) -> Option<String> {
    let req = serde_json::from_str::<ReqOnly>(text).ok()?.req?;
    let req = match req {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Some(req.chars().take(MAX_REQ_CHARS).collect())
}

/// A frame over MAX_FRAME_BYTES is tungstenite's capacity error; anything else is a dead socket.
fn read_error(e: &axum::Error) -> CloseCode {
    use std::error::Error as _;
    match e
        .source()
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
    {
        Some(tungstenite::Error::Capacity(_)) => CloseCode::TooBig,
        _ => CloseCode::Normal,
    }
}
