//! A hub client over a real WebSocket that speaks the server's own `ClientMsg`/`ServerMsg`, and
//! checks what every client may rely on: a logged event's `seq` only ever grows.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use oncolive_server::domain::Command;
use oncolive_server::model::{Question, QuestionId, Session};
use oncolive_server::protocol::{
    Ack, BEARER_PROTOCOL_PREFIX, ClientMsg, ErrorCode, ErrorMsg, Request, SUBPROTOCOL, ServerMsg,
    Snapshot, VoteCount,
};

use crate::api::WsTarget;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// How long a client waits for a message that should come.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long opening a socket (TCP connect, then the WebSocket handshake) may take.
const CONNECT_WAIT: Duration = Duration::from_secs(20);

pub type Socket = WebSocketStream<TcpStream>;

/// How one client's socket is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketOptions {
    /// Source address (several 127.0.0.x give more than ~28k ephemeral ports to a load run).
    pub source: Option<IpAddr>,
    /// Kernel receive buffer, to make a stalled client fill up quickly.
    pub recv_buffer: Option<u32>,
}

/// Opens the hub socket `target` (see [`crate::api::ws_url`]), offering the subprotocols
/// `oncolive.v1` and `bearer.<token>`. Buffers are small, since a load run holds thousands of
/// these in one process.
pub async fn connect_socket(target: &WsTarget, options: SocketOptions) -> anyhow::Result<Socket> {
    let mut request = target.url.as_str().into_client_request()?;
    let protocols = format!("{SUBPROTOCOL}, {BEARER_PROTOCOL_PREFIX}{}", target.token);
    request.headers_mut().insert(
        "sec-websocket-protocol",
        protocols
            .parse()
            .context("the token is not a valid header value")?,
    );
    connect_request(request, options).await
}

/// Opens a hub socket with `request` as it is (tests of the handshake itself).
pub async fn connect_request(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    options: SocketOptions,
) -> anyhow::Result<Socket> {
    let host = request.uri().host().context("no host in the URL")?;
    let port = request.uri().port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = options.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    if let Some(size) = options.recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = tokio::time::timeout(CONNECT_WAIT, socket.connect(addr))
        .await
        .context("TCP connect timed out")??;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio::time::timeout(
        CONNECT_WAIT,
        client_async_with_config(request, stream, Some(config)),
    )
    .await
    .context("WebSocket handshake timed out")??;
    Ok(ws)
}

pub struct HubClient {
    pub ws: Socket,
    /// The highest `seq` received: the `since` to resume with.
    pub seq: u64,
    /// How long [`HubClient::recv`] waits.
    pub wait: Duration,
    /// Every logged event received since [`HubClient::keep_events`], in the order received:
    /// for tests that check what a client saw as a whole (one order on every node, no gap).
    pub events: Vec<ServerMsg>,
    keep_events: bool,
    /// What came while [`HubClient::reply_to`] waited (but pongs): an event a command causes may
    /// come before the command's reply, so [`HubClient::recv`] returns these first.
    held: VecDeque<ServerMsg>,
    next_req: u64,
    /// Whether an `ask` refused with `consent_required` is answered by agreeing to the privacy
    /// notice and asking again, as the pages do (default `true`; tests of consent turn it off).
    pub auto_consent: bool,
}

/// The text frame that carries `msg`.
pub fn frame(msg: &ClientMsg) -> anyhow::Result<Message> {
    Ok(Message::Text(serde_json::to_string(msg)?.into()))
}

impl HubClient {
    pub async fn connect(target: &WsTarget) -> anyhow::Result<HubClient> {
        let ws = connect_socket(target, SocketOptions::default()).await?;
        Ok(HubClient::from_socket(ws))
    }

    /// A client over a socket opened some other way (e.g. with [`connect_socket`] and a small
    /// receive buffer, to play a stalled client).
    pub fn from_socket(ws: Socket) -> HubClient {
        HubClient {
            ws,
            seq: 0,
            wait: WAIT,
            events: Vec::new(),
            keep_events: false,
            held: VecDeque::new(),
            next_req: 0,
            auto_consent: true,
        }
    }

    /// From now on, keeps every logged event received in [`HubClient::events`].
    pub fn keep_events(&mut self) {
        self.keep_events = true;
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        self.send_raw(frame(msg)?).await
    }

    /// Sends `command` with a fresh `req` without waiting for the reply; returns the `req`.
    pub async fn submit(&mut self, command: Command) -> anyhow::Result<String> {
        let req = self.fresh_req();
        self.send(&ClientMsg::command(req.clone(), command)).await?;
        Ok(req)
    }

    /// Sends a `ping` without a `req` and without waiting for the `pong`.
    pub async fn send_ping(&mut self) -> anyhow::Result<()> {
        self.send(&ClientMsg {
            req: None,
            request: Request::Ping,
        })
        .await
    }

    /// Sends any frame, e.g. malformed JSON.
    pub async fn send_raw(&mut self, msg: Message) -> anyhow::Result<()> {
        self.ws.send(msg).await.context("send")
    }

    /// The next message, within [`HubClient::wait`]. A close or a `seq` that goes back is an
    /// error.
    pub async fn recv(&mut self) -> anyhow::Result<ServerMsg> {
        match self.held.pop_front() {
            Some(msg) => Ok(msg),
            None => self.recv_from_socket().await,
        }
    }

    async fn recv_from_socket(&mut self) -> anyhow::Result<ServerMsg> {
        let deadline = Instant::now() + self.wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no message within {:?}", self.wait))?
                .ok_or_else(|| anyhow!("socket ended"))?
                .context("socket error")?;
            match frame {
                Message::Text(text) => {
                    let msg = self.decode(text.as_str())?;
                    return self.assemble(msg, deadline).await;
                }
                Message::Close(frame) => bail!("closed unexpectedly: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// A snapshot sent in parts, put back together: `msg` itself unless it is a `snapshot`
    /// with `more`, whose `snapshot_part`s must then follow before any other message.
    async fn assemble(&mut self, msg: ServerMsg, deadline: Instant) -> anyhow::Result<ServerMsg> {
        let ServerMsg::Snapshot(mut snapshot) = msg else {
            return Ok(msg);
        };
        while snapshot.more {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("the snapshot's parts did not come within {:?}", self.wait))?
                .ok_or_else(|| anyhow!("socket ended within a snapshot"))?
                .context("socket error")?;
            let text = match frame {
                Message::Text(text) => text,
                Message::Close(frame) => bail!("closed within a snapshot: {frame:?}"),
                _ => continue,
            };
            match self.decode(text.as_str())? {
                ServerMsg::SnapshotPart(part) if part.seq == snapshot.seq => snapshot.absorb(part),
                other => bail!(
                    "expected a snapshot_part at {}, got {other:?}",
                    snapshot.seq
                ),
            }
        }
        Ok(ServerMsg::Snapshot(snapshot))
    }

    /// Parses a text frame from the server and [observes](HubClient::observe) it.
    fn decode(&mut self, text: &str) -> anyhow::Result<ServerMsg> {
        let msg: ServerMsg =
            serde_json::from_str(text).with_context(|| format!("not a server message: {text}"))?;
        self.observe(&msg)?;
        Ok(msg)
    }

    /// Records the `seq` a message carries; a logged event must be newer than all before it.
    /// Acks name an event the client will also receive, so only what was received counts.
    /// After `resumed` the client stands at its `since`: the missed events, up to the `seq`
    /// (the head), follow.
    fn observe(&mut self, msg: &ServerMsg) -> anyhow::Result<()> {
        if let Some(seq) = msg.event_seq() {
            if seq <= self.seq {
                bail!("seq went from {} to {seq}: {msg:?}", self.seq);
            }
            self.seq = seq;
            if self.keep_events {
                self.events.push(msg.clone());
            }
        }
        let state_seq = match msg {
            ServerMsg::Snapshot(s) => Some(s.seq),
            ServerMsg::Resumed { since, .. } => Some(*since),
            ServerMsg::Viewers { seq, .. } => Some(*seq),
            _ => None,
        };
        if let Some(seq) = state_seq {
            self.seq = self.seq.max(seq);
        }
        Ok(())
    }

    /// Reads until `pick` returns something, within [`HubClient::wait`] in all.
    pub async fn recv_until<T>(
        &mut self,
        mut pick: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + self.wait;
        loop {
            if Instant::now() >= deadline {
                bail!("no matching message within {:?}", self.wait);
            }
            let msg = self.recv().await?;
            if let Some(found) = pick(&msg) {
                return Ok(found);
            }
        }
    }

    /// The first kept event (see [`HubClient::keep_events`]) that `pick` takes, or else the next
    /// message it takes: for an event that may have come while the client waited for something
    /// else.
    pub async fn event<T>(
        &mut self,
        mut pick: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> anyhow::Result<T> {
        if let Some(found) = self.events.iter().find_map(&mut pick) {
            return Ok(found);
        }
        self.recv_until(pick).await
    }

    /// Like [`HubClient::event`], for a `question` event whose question satisfies `pred`:
    /// the event's `seq` and the question.
    pub async fn question_event(
        &mut self,
        pred: impl Fn(&Question) -> bool,
    ) -> anyhow::Result<(u64, Question)> {
        self.event(|m| match m {
            ServerMsg::Question { seq, question } if pred(question) => {
                Some((*seq, question.clone()))
            }
            _ => None,
        })
        .await
    }

    /// The first message, which must be a snapshot (put together from its parts).
    pub async fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        match self.recv().await? {
            ServerMsg::Snapshot(s) => Ok(s),
            other => bail!("expected a snapshot first, got {other:?}"),
        }
    }

    /// The next `question` event whose question satisfies `pred`.
    pub async fn recv_question(
        &mut self,
        pred: impl Fn(&Question) -> bool,
    ) -> anyhow::Result<Question> {
        self.recv_until(|m| match m {
            ServerMsg::Question { question, .. } if pred(question) => Some(question.clone()),
            _ => None,
        })
        .await
    }

    /// The next `session` event whose session satisfies `pred`.
    pub async fn recv_session(
        &mut self,
        pred: impl Fn(&Session) -> bool,
    ) -> anyhow::Result<Session> {
        self.recv_until(|m| match m {
            ServerMsg::Session { session, .. } if pred(session) => Some(session.clone()),
            _ => None,
        })
        .await
    }

    /// The next `votes` event that satisfies `pred`.
    pub async fn recv_votes(
        &mut self,
        pred: impl Fn(&[VoteCount]) -> bool,
    ) -> anyhow::Result<Vec<VoteCount>> {
        self.recv_until(|m| match m {
            ServerMsg::Votes { votes, .. } if pred(votes) => Some(votes.clone()),
            _ => None,
        })
        .await
    }

    /// The next `error` message, whatever it answers.
    pub async fn recv_error(&mut self) -> anyhow::Result<ErrorMsg> {
        self.recv_until(|m| match m {
            ServerMsg::Error(e) => Some(e.clone()),
            _ => None,
        })
        .await
    }

    /// The id of the next `question_removed` event.
    pub async fn recv_removed(&mut self) -> anyhow::Result<QuestionId> {
        self.recv_until(|m| match m {
            ServerMsg::QuestionRemoved { id, .. } => Some(*id),
            _ => None,
        })
        .await
    }

    fn fresh_req(&mut self) -> String {
        self.next_req += 1;
        format!("r{}", self.next_req)
    }

    /// Sends `command` with a fresh `req` and returns its ack or its error. An `ask` refused
    /// for want of consent is asked again after consenting (see [`HubClient::auto_consent`]).
    pub async fn request(&mut self, command: Command) -> anyhow::Result<Result<Ack, ErrorMsg>> {
        let req = self.fresh_req();
        self.send(&ClientMsg::command(req.clone(), command.clone()))
            .await?;
        let reply = self.reply_to(&req).await?;
        match reply {
            Err(e) if e.code == ErrorCode::ConsentRequired && self.auto_consent => {
                self.consent().await?;
                let req = self.fresh_req();
                self.send(&ClientMsg::command(req.clone(), command)).await?;
                self.reply_to(&req).await
            }
            reply => Ok(reply),
        }
    }

    /// The ack or error answering `req`, skipping events on the way.
    pub async fn reply_to(&mut self, req: &str) -> anyhow::Result<Result<Ack, ErrorMsg>> {
        let mine = |r: &Option<String>| r.as_deref() == Some(req);
        let deadline = Instant::now() + self.wait;
        loop {
            if Instant::now() >= deadline {
                bail!("no reply to {req} within {:?}", self.wait);
            }
            match self.recv_from_socket().await? {
                ServerMsg::Ack(ack) if mine(&ack.req) => return Ok(Ok(ack)),
                ServerMsg::Error(err) if mine(&err.req) => return Ok(Err(err)),
                ServerMsg::Pong { .. } => {}
                msg => self.held.push_back(msg),
            }
        }
    }

    /// Sends a command that must be acknowledged.
    pub async fn ok(&mut self, command: Command) -> anyhow::Result<Ack> {
        let sent = format!("{command:?}");
        self.request(command)
            .await?
            .map_err(|e| anyhow!("{sent} was refused: {e:?}"))
    }

    /// Sends a command that must be acknowledged with the question it stored or changed, and
    /// returns that question.
    pub async fn ok_question(&mut self, command: Command) -> anyhow::Result<Question> {
        let sent = format!("{command:?}");
        self.ok(command)
            .await?
            .question
            .ok_or_else(|| anyhow!("the ack of {sent} has no question"))
    }

    /// Asks `text`, which must be acknowledged; returns the question as the author sees it.
    /// A patient who has not agreed to the privacy notice yet agrees first, as the pages do.
    pub async fn ask(&mut self, text: impl Into<String>) -> anyhow::Result<Question> {
        self.ok_question(Command::Ask { text: text.into() }).await
    }

    /// Agrees to the privacy notice; returns the time the server recorded.
    pub async fn consent(&mut self) -> anyhow::Result<time::OffsetDateTime> {
        let ack = self
            .consent_reply()
            .await?
            .map_err(|e| anyhow!("consent was refused: {e:?}"))?;
        ack.consented_at
            .ok_or_else(|| anyhow!("the ack of consent has no consented_at"))
    }

    /// Sends `consent` and returns its ack or its error.
    pub async fn consent_reply(&mut self) -> anyhow::Result<Result<Ack, ErrorMsg>> {
        let req = self.fresh_req();
        self.send(&ClientMsg {
            req: Some(req.clone()),
            request: Request::Consent,
        })
        .await?;
        self.reply_to(&req).await
    }

    /// What the server's screen finds in `text`: the `screened` reply (or the refusal).
    pub async fn screen(&mut self, text: &str) -> anyhow::Result<Result<ServerMsg, ErrorMsg>> {
        let req = self.fresh_req();
        self.send(&ClientMsg {
            req: Some(req.clone()),
            request: Request::Screen { text: text.into() },
        })
        .await?;
        let mine = |r: &Option<String>| r.as_deref() == Some(req.as_str());
        self.recv_until(|m| match m {
            ServerMsg::Screened { req: r, .. } if mine(r) => Some(Ok(m.clone())),
            ServerMsg::Error(err) if mine(&err.req) => Some(Err(err.clone())),
            _ => None,
        })
        .await
    }

    /// Sends a command that must be refused, and returns the refusal.
    pub async fn refused(&mut self, command: Command) -> anyhow::Result<ErrorMsg> {
        let sent = format!("{command:?}");
        match self.request(command).await? {
            Ok(ack) => bail!("{sent} was acknowledged: {ack:?}"),
            Err(e) => Ok(e),
        }
    }

    /// A `ping` answered by its `pong`.
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        let req = self.fresh_req();
        self.send(&ClientMsg::ping(req.clone())).await?;
        self.recv_until(|m| match m {
            ServerMsg::Pong { req: r } if r.as_deref() == Some(req.as_str()) => Some(()),
            _ => None,
        })
        .await
    }

    /// Reads until the server closes the socket, within 30 s; returns the close code (`None`
    /// when the connection ended without a close frame).
    pub async fn closed(&mut self) -> anyhow::Result<Option<u16>> {
        self.until_closed(|_| ()).await
    }

    /// Like [`HubClient::closed`], handing every message that comes before the end to `seen`
    /// (a connection that fails or a node that dies ends it too).
    pub async fn until_closed(
        &mut self,
        mut seen: impl FnMut(ServerMsg),
    ) -> anyhow::Result<Option<u16>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("socket was not closed in time"),
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Close(frame)))) => return Ok(frame.map(|f| u16::from(f.code))),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let msg = self.decode(text.as_str())?;
                    seen(self.assemble(msg, deadline).await?)
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}
