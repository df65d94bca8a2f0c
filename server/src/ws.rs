//! One WebSocket connection: the first snapshot or resume, then requests in and events out.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tracing::Instrument;

use crate::AppState;
use crate::auth::Claims;
use crate::broker::Replay;
use crate::client::{AddressKey, client_ip};
use crate::domain::{Actor, Command, Reply};
use crate::error::ApiError;
use crate::hub::{Audience, Frame, Membership};
use crate::metrics as m;
use crate::model::{MAX_QUESTION_CHARS, Role, SessionId, checked_multiline};
use crate::protocol::{
    Ack, BEARER_PROTOCOL_PREFIX, ClientMsg, CloseCode, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES,
    MAX_REQ_CHARS, ReqOnly, Request, SUBPROTOCOL, ServerMsg, Snapshot, You, encode,
};
use crate::snapshot;

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
/// Most commands of one socket waiting to be stored. Beyond, the socket reads no more until one
/// is answered (the client's sends then wait in TCP), so a socket holds at most this many.
const MAX_IN_FLIGHT: usize = 32;

/// Commands of one socket waiting to be stored, answered in the order they came. On Redis a
/// command takes a round trip or two; stored one after another, a moderator approving 50
/// questions a second fell behind (each waited for the one before it), and the socket's own
/// events waited too. Each future queues its command with the broker on its first poll, and
/// `FuturesOrdered` first polls them in the order they were pushed, so a socket's commands are
/// stored in the order it sent them (votes are stored on their own, as always).
type InFlight = FuturesOrdered<BoxFuture<'static, ServerMsg>>;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// Deprecated: a token in the URL ends up in proxies' access logs. Still taken, for one
    /// release, from pages loaded before the upgrade that reconnect; see docs/security.md.
    token: Option<String>,
    since: Option<u64>,
}

/// How long a client refused for holding too many sockets is asked to wait.
const BUSY_RETRY: Duration = Duration::from_secs(10);

pub async fn upgrade(
    State(app): State<AppState>,
    Path(session): Path<SessionId>,
    Query(query): Query<WsQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = match offered_token(&ws)? {
        Some(token) => token,
        None => {
            let token = query.token.ok_or_else(|| {
                ApiError::Unauthorized(format!(
                    "missing token: offer the subprotocols {SUBPROTOCOL} and \
                     {BEARER_PROTOCOL_PREFIX}<token> (Sec-WebSocket-Protocol)"
                ))
            })?;
            m::url_tokens().increment(1);
            token
        }
    };
    let claims = app.keys.verify(&token)?;
    claims.check_session(session)?;
    let found = app
        .broker
        .session(session)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such session".into()))?;
    claims.check_links_version(found.links_version)?;
    let address = AddressKey::of(client_ip(
        app.config.limits.trust_forwarded_for,
        peer,
        &headers,
    ));
    let permit = app
        .connections
        .take(claims.role, claims.sub, address)
        .map_err(|refused| {
            m::rate_limited().increment(1);
            if refused.node_wide() {
                ApiError::Unavailable(refused.to_string())
            } else {
                ApiError::rate_limited(refused.to_string(), BUSY_RETRY)
            }
        })?;
    let since = query.since;
    Ok(ws
        .protocols([SUBPROTOCOL])
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
                Connection::new(app, session, claims, address)
                    .run(socket, since)
                    .await;
                sockets.decrement(1.0);
            }
            .instrument(span)
        }))
}

/// The token offered as subprotocol `bearer.<token>`, if any. A browser fails a handshake
/// whose answer names no protocol it offered, so a token comes only with [`SUBPROTOCOL`].
fn offered_token(ws: &WebSocketUpgrade) -> Result<Option<String>, ApiError> {
    let offered: Vec<&str> = ws
        .requested_protocols()
        .filter_map(|p| p.to_str().ok())
        .collect();
    let Some(token) = offered
        .iter()
        .find_map(|p| p.strip_prefix(BEARER_PROTOCOL_PREFIX))
    else {
        return Ok(None);
    };
    if !offered.contains(&SUBPROTOCOL) {
        return Err(ApiError::BadRequest(format!(
            "offer the subprotocol {SUBPROTOCOL} along with {BEARER_PROTOCOL_PREFIX}<token>"
        )));
    }
    Ok(Some(token.to_owned()))
}

/// The `links_version` a `session` event carries, read without decoding the whole message:
/// only staff sockets holding a replaceable link look, and only at session events.
fn links_version_of(frame: &str) -> Option<u32> {
    #[derive(Deserialize)]
    struct SessionMsg {
        session: Versioned,
    }
    #[derive(Deserialize)]
    struct Versioned {
        #[serde(default)]
        links_version: u32,
    }
    if !frame.starts_with(r#"{"type":"session","#) {
        return None;
    }
    serde_json::from_str::<SessionMsg>(frame)
        .ok()
        .map(|m| m.session.links_version)
}

/// Why the loop ended, and so which close code the client gets.
type Stop = CloseCode;

struct Connection {
    app: AppState,
    session: SessionId,
    claims: Claims,
    actor: Actor,
    /// Where the client connects from, for the per-address question budget.
    address: AddressKey,
    /// The highest event `seq` this socket has been given or skipped; nothing at or below it
    /// is sent again.
    sent: u64,
    limiter: DefaultDirectRateLimiter,
    strikes: u32,
    last_heard: Instant,
}

impl Connection {
    fn new(app: AppState, session: SessionId, claims: Claims, address: AddressKey) -> Self {
        let per_second =
            NonZeroU32::new(app.config.limits.messages_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        Connection {
            actor: claims.actor(),
            app,
            session,
            claims,
            address,
            sent: 0,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            strikes: 0,
            last_heard: Instant::now(),
        }
    }

    async fn run(mut self, socket: WebSocket, since: Option<u64>) {
        let (mut sink, mut stream) = socket.split();
        if self.actor.role == Role::Patient {
            // Read once: a consent given on this socket is kept on it as well as stored. A
            // failed read leaves the patient to consent again, which stores nothing new.
            match self.app.broker.consent(self.session, self.actor.id).await {
                Ok(at) => self.actor.consented_at = at,
                Err(e) => tracing::warn!(error = %e, "cannot read the patient's consent"),
            }
        }
        let audience = if self.actor.role == Role::Patient {
            Audience::Viewer
        } else {
            Audience::Staff
        };
        let stop = match self.app.hub.join(self.session, audience).await {
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
                        self.check_not_revoked(&event)?;
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
        // The links may have been replaced between the upgrade's check and the join.
        if self
            .claims
            .check_links_version(view.session.links_version)
            .is_err()
        {
            return Err(CloseCode::Revoked);
        }
        self.sent = view.seq;
        let muted = view.session.muted.contains(&self.actor.id);
        let snapshot = Snapshot {
            seq: view.seq,
            session: view.session.view_for(self.actor.role),
            you: You {
                id: self.actor.id,
                role: self.actor.role,
                name: self.actor.name.clone(),
                consented_at: self.actor.consented_at,
                muted,
            },
            questions: view.questions,
            my_votes: view.my_votes,
            viewers: member.channel.viewers(),
            video: member.channel.video(),
            more: false,
        };
        // Each part is encoded only when its turn comes and written with the usual
        // back-pressure, so a socket holds at most one part of encoded text at a time. Events
        // that arrive meanwhile wait in the socket's queue and follow the last part.
        for msg in snapshot::split(snapshot, self.app.config.snapshot_part_bytes) {
            self.send(sink, encode(&msg).into()).await?;
        }
        Ok(())
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
        let mut in_flight = InFlight::new();
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => Err(CloseCode::GoingAway),
                _ = &mut expiry => Err(CloseCode::TokenExpired),
                frame = member.frames.recv() => self.outgoing(sink, member, frame).await,
                Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                    self.stored(sink, reply).await
                }
                incoming = stream.next(), if in_flight.len() < MAX_IN_FLIGHT => match incoming {
                    Some(Ok(msg)) => self.incoming(sink, msg, &mut in_flight).await,
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
                        self.check_not_revoked(&event)?;
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

    /// Closes a socket of a replaced expert or moderator link as soon as the session event
    /// that replaced it arrives.
    fn check_not_revoked(&self, event: &crate::protocol::Event) -> Result<(), Stop> {
        if !self.actor.role.holds_session_link() {
            return Ok(());
        }
        match links_version_of(event.frame.as_str()) {
            Some(version) if version != self.actor.links_version => {
                tracing::info!(version, "staff link replaced; closing");
                Err(CloseCode::Revoked)
            }
            _ => Ok(()),
        }
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
        in_flight: &mut InFlight,
    ) -> Result<(), Stop> {
        self.last_heard = Instant::now();
        if matches!(msg, Message::Close(_)) {
            return Err(CloseCode::Normal);
        }
        m::messages_in().increment(1);
        // Every frame counts, control frames included: a flood of pings or binary frames costs
        // the server as much as one of requests.
        let over_rate = self.limiter.check().is_err();
        if over_rate {
            self.strikes += 1;
            if self.strikes > FLOOD_STRIKES {
                return Err(CloseCode::Flood);
            }
        }
        let text = match msg {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) if !over_rate => {
                return Ok(());
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
        };
        // Refused by its length alone, before any parsing: `req` is then null.
        if let Some(text) = text.as_ref().filter(|t| t.len() > MAX_MESSAGE_BYTES) {
            let err = ApiError::TooLarge(format!(
                "messages are limited to {MAX_MESSAGE_BYTES} bytes, got {}",
                text.len()
            ));
            return self.reply(sink, &err.into_server_msg(None)).await;
        }
        if over_rate {
            let per_second = u64::from(self.app.config.limits.messages_per_second);
            let err = ApiError::rate_limited(
                "too many messages; slow down",
                Duration::from_millis(1000 / per_second),
            );
            let req = text.as_deref().and_then(request_id);
            return self.reply(sink, &err.into_server_msg(req)).await;
        }
        let Some(text) = text else {
            let err = ApiError::BadRequest("binary frames are not used; send JSON text".into());
            return self.reply(sink, &err.into_server_msg(None)).await;
        };
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
            Request::Consent => self.consent(req).await,
            Request::Screen { text } => self.screen(req, &text),
            Request::Command(command) => {
                in_flight.push_back(self.execute(req, command));
                return Ok(());
            }
        };
        self.stored(sink, reply).await
    }

    /// Sends the reply to a request.
    async fn stored(
        &mut self,
        sink: &mut SplitSink<WebSocket, Message>,
        reply: ServerMsg,
    ) -> Result<(), Stop> {
        self.reply(sink, &reply).await?;
        // The store refused the command because the links were replaced: this socket's
        // session event may still be on its way, so close now.
        if let ServerMsg::Error(e) = &reply
            && e.code == crate::protocol::ErrorCode::Unauthorized
            && self.actor.role.holds_session_link()
        {
            return Err(CloseCode::Revoked);
        }
        Ok(())
    }

    async fn consent(&mut self, req: Option<String>) -> ServerMsg {
        if self.actor.role != Role::Patient {
            return ApiError::Forbidden("only patients agree to the privacy notice".into())
                .into_server_msg(req);
        }
        let now = time::OffsetDateTime::now_utc();
        match self
            .app
            .broker
            .record_consent(self.session, self.actor.id, now)
            .await
        {
            Ok(at) => {
                if self.actor.consented_at.is_none() {
                    m::consents().increment(1);
                }
                self.actor.consented_at = Some(at);
                ServerMsg::Ack(Ack {
                    req,
                    seq: self.sent,
                    question: None,
                    voted: None,
                    session: None,
                    consented_at: Some(at),
                })
            }
            Err(e) => ApiError::from(e).into_server_msg(req),
        }
    }

    /// What the screen finds in a text the client has not sent yet. Patients learn of the
    /// personal details only: telling them which words are blocked would teach a spammer
    /// how to get round the list.
    fn screen(&self, req: Option<String>, text: &str) -> ServerMsg {
        let text = match checked_multiline("text", text, 0, MAX_QUESTION_CHARS) {
            Ok(text) => text,
            Err(e) => return ApiError::Invalid(e).into_server_msg(req),
        };
        let mut findings = self.app.config.screen.findings(&text, &[]);
        if !self.actor.role.is_staff() {
            findings.retain(|f| f.kind.is_personal());
        }
        let redacted = crate::screen::redact(&text, &findings);
        ServerMsg::Screened {
            req,
            findings,
            redacted,
        }
    }

    /// Checks a command against what this socket knows (consent, budgets) and returns the
    /// future that stores it, or one that is the refusal (answered in its turn all the same).
    fn execute(&mut self, req: Option<String>, command: Command) -> BoxFuture<'static, ServerMsg> {
        match self.check(req, command) {
            Ok((req, command)) => {
                let app = self.app.clone();
                let session = self.session;
                let actor = self.actor.clone();
                Box::pin(store_command(app, session, actor, req, command))
            }
            Err(refused) => Box::pin(std::future::ready(*refused)),
        }
    }

    fn check(
        &mut self,
        req: Option<String>,
        command: Command,
    ) -> Result<(Option<String>, Command), Box<ServerMsg>> {
        // Before the budgets: a question refused for want of consent was not asked, and must
        // not cost the patient one of their questions. The store checks it again.
        if matches!(command, Command::Ask { .. })
            && self.actor.role == Role::Patient
            && self.actor.consented_at.is_none()
        {
            return Err(Box::new(
                ApiError::from(crate::domain::Refusal::ConsentRequired).into_server_msg(req),
            ));
        }
        if matches!(command, Command::Ask { .. })
            && self.actor.role == crate::model::Role::Patient
            && let Err(refused) = self.ask_budget()
        {
            m::rate_limited().increment(1);
            return Err(Box::new(refused.into_server_msg(req)));
        }
        Ok((req, command))
    }

    /// A patient's question must fit three budgets: the patient's own, the client address's
    /// (over every token it joined with, so joining again buys nothing) and the session's (so
    /// many addresses together cannot bury the moderators). Checked from the narrowest; one that
    /// refuses leaves the wider ones untouched.
    fn ask_budget(&self) -> Result<(), ApiError> {
        let limits = &self.app.config.limits;
        let budgets = &self.app.rate_limits;
        let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
        let refused = |message: String, not_until: governor::NotUntil<_>| {
            let wait = not_until.wait_time_from(now);
            let message = format!("{message}; try again in {} s", wait.as_secs() + 1);
            ApiError::rate_limited(message, wait)
        };
        budgets.asks.check_key(&self.actor.id).map_err(|n| {
            refused(
                format!("at most {} questions a minute", limits.asks_per_minute),
                n,
            )
        })?;
        budgets
            .asks_by_address
            .check_key(&self.address)
            .map_err(|n| {
                refused(
                    format!(
                        "at most {} questions a minute from one network",
                        limits.asks_per_minute_per_address
                    ),
                    n,
                )
            })?;
        budgets
            .asks_by_session
            .check_key(&self.session)
            .map_err(|n| {
                refused(
                    "this session is taking too many questions at once".to_owned(),
                    n,
                )
            })?;
        Ok(())
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

/// Stores one command and makes its reply.
async fn store_command(
    app: AppState,
    session: SessionId,
    actor: Actor,
    req: Option<String>,
    command: Command,
) -> ServerMsg {
    let is_ask = matches!(command, Command::Ask { .. });
    let moves_status = m::moves_status(&command);
    match app.broker.apply(session, &actor, command).await {
        Ok(ack) => {
            if is_ask {
                m::questions("submitted").increment(1);
            }
            let (question, voted, session) = match ack.reply {
                Reply::Question(q) => {
                    if moves_status {
                        m::questions(q.status.name()).increment(1);
                    }
                    if is_ask {
                        for f in &q.findings {
                            m::findings(f.kind).increment(1);
                        }
                    }
                    (Some(q.view_for(actor.role, actor.id)), None, None)
                }
                Reply::Voted(v) => (None, Some(v), None),
                Reply::Session(s) => {
                    if s.state == crate::model::SessionState::Ended {
                        app.session_ended(s.id).await;
                    }
                    (None, None, Some(s.view_for(actor.role)))
                }
            };
            ServerMsg::Ack(Ack {
                req,
                seq: ack.seq,
                question,
                voted,
                session,
                consented_at: None,
            })
        }
        Err(e) => ApiError::from(e).into_server_msg(req),
    }
}
