//! The test harness: the real server on 127.0.0.1:0, real HTTP and WebSocket clients.
//!
//! `ONCOLIVE_TEST_BROKER=redis` (or `REDIS_URL`) runs the same tests against Redis, each test
//! with its own key prefix. `TEST_LOG=1` prints the server's logs.

#![allow(dead_code)]

pub mod redis;

use std::sync::Once;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use oncolive_server::config::{Cli, Command, ServeArgs};
use oncolive_server::model::Role;
use oncolive_server::{Running, start};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a message that should come.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub url: String,
    pub running: Option<Running>,
    pub cancel: CancellationToken,
    pub http: reqwest::Client,
    pub admin: String,
    _data: tempfile::TempDir,
    _redis: Option<redis::RedisServer>,
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("debug,hyper=info"))
                .with_test_writer()
                .try_init();
        }
    });
}

pub fn use_redis() -> bool {
    std::env::var("ONCOLIVE_TEST_BROKER").is_ok_and(|b| b == "redis")
        || std::env::var_os("REDIS_URL").is_some()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the server with extra `serve` flags.
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    init_logs();
    let data = tempfile::tempdir().expect("tempdir");
    let redis = use_redis().then(redis::RedisServer::start);
    let mut argv: Vec<String> = vec![
        "oncolive".into(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data.path().display().to_string(),
    ];
    // Tests drive many messages through one socket; the flood tests lower this again.
    for (flag, value) in [
        ("--messages-per-second", "100000"),
        ("--joins-per-second", "100000"),
    ] {
        if !extra.contains(&flag) {
            argv.extend([flag.into(), value.into()]);
        }
    }
    if let Some(r) = &redis {
        argv.extend(["--redis".into(), r.url.clone()]);
        argv.extend(["--redis-prefix".into(), redis::unique_prefix()]);
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    let Command::Serve(args) = Cli::parse_from(argv).command else {
        unreachable!("serve was parsed")
    };
    spawn_with_args(*args, data, redis).await
}

async fn spawn_with_args(
    args: ServeArgs,
    data: tempfile::TempDir,
    redis: Option<redis::RedisServer>,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let cancel = CancellationToken::new();
    let running = start(&args, listener, cancel.clone())
        .await
        .expect("server starts");
    let (_, admin) = running
        .app
        .keys
        .issue(Role::Admin, None, None, Duration::from_secs(3600));
    TestApp {
        url: format!("http://{}", running.addr),
        running: Some(running),
        cancel,
        http: reqwest::Client::new(),
        admin,
        _data: data,
        _redis: redis,
    }
}

pub struct CreatedSession {
    pub id: String,
    pub expert: String,
    pub moderator: String,
    pub body: Value,
}

impl TestApp {
    pub async fn create_session(&self, moderation: &str) -> CreatedSession {
        let res = self
            .http
            .post(format!("{}/api/sessions", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({
                "title": "Screening for colorectal cancer",
                "topic": "FIT tests and colonoscopy",
                "expert_name": "Dr. Chen",
                "scheduled_start": "2026-12-01T12:00:00Z",
                "moderation": moderation,
            }))
            .send()
            .await
            .expect("create session");
        assert_eq!(res.status(), 201, "create session");
        let body: Value = res.json().await.expect("json");
        CreatedSession {
            id: body["session"]["id"].as_str().expect("id").to_owned(),
            expert: body["tokens"]["expert"]
                .as_str()
                .expect("expert")
                .to_owned(),
            moderator: body["tokens"]["moderator"]
                .as_str()
                .expect("moderator")
                .to_owned(),
            body,
        }
    }

    /// A fresh patient token.
    pub async fn join(&self, session: &str, name: Option<&str>) -> String {
        let body = match name {
            Some(n) => json!({ "name": n }),
            None => json!({}),
        };
        let res = self
            .http
            .post(format!("{}/api/sessions/{session}/join", self.url))
            .json(&body)
            .send()
            .await
            .expect("join");
        assert_eq!(res.status(), 201, "join");
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    pub fn ws_url(&self, session: &str, token: &str, since: Option<u64>) -> String {
        let base = self.url.replacen("http://", "ws://", 1);
        match since {
            Some(s) => format!("{base}/api/sessions/{session}/ws?token={token}&since={s}"),
            None => format!("{base}/api/sessions/{session}/ws?token={token}"),
        }
    }

    /// Connects and reads the first message (snapshot or resumed).
    pub async fn connect(&self, session: &str, token: &str) -> (Client, Value) {
        let mut client = Client::connect(&self.ws_url(session, token, None)).await;
        let first = client.recv().await;
        assert_eq!(first["type"], "snapshot", "first message: {first}");
        client.observe(&first);
        (client, first)
    }

    /// POSTs JSON to `path`, with a bearer token if given.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("POST")
    }

    /// GETs `path`, with a bearer token if given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("GET")
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Graceful shutdown, waiting until the server has stopped.
    pub async fn shutdown(&mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.stopped().await.expect("clean stop");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A WebSocket client that checks, for every event it sees, that `seq` only grows.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Highest event `seq` seen.
    pub seq: u64,
    next_req: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("websocket connects");
        Client {
            ws,
            seq: 0,
            next_req: 0,
        }
    }

    pub async fn send(&mut self, msg: Value) {
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// The next text message, within [`WAIT`]. Panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait")
                .expect("socket open")
                .expect("no socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON"),
                Message::Close(frame) => panic!("closed unexpectedly: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Records the `seq` of an event, asserting it grows.
    pub fn observe(&mut self, msg: &Value) {
        let is_event = matches!(
            msg["type"].as_str(),
            Some("session" | "question" | "question_removed" | "votes")
        );
        // Acks name an event the client will also receive; only what was received counts.
        let counts = is_event
            || matches!(
                msg["type"].as_str(),
                Some("snapshot" | "resumed" | "viewers")
            );
        if let (Some(seq), true) = (msg["seq"].as_u64(), counts) {
            if is_event {
                assert!(seq > self.seq, "seq went from {} to {seq}: {msg}", self.seq);
            }
            self.seq = self.seq.max(seq);
        }
    }

    /// Reads until a message of `kind` that satisfies `pred`, observing everything on the way.
    pub async fn recv_until(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {kind} message matched in time"
            );
            let msg = self.recv().await;
            self.observe(&msg);
            if msg["type"] == kind && pred(&msg) {
                return msg;
            }
        }
    }

    /// Sends a request with a fresh `req` and returns its ack or error.
    pub async fn request(&mut self, mut msg: Value) -> Value {
        self.next_req += 1;
        let req = format!("r{}", self.next_req);
        msg["req"] = json!(req);
        self.send(msg).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no reply to {req}");
            let reply = self.recv().await;
            self.observe(&reply);
            if reply["req"] == req.as_str()
                && matches!(reply["type"].as_str(), Some("ack" | "error" | "pong"))
            {
                return reply;
            }
        }
    }

    /// Sends a request that must succeed.
    pub async fn ok(&mut self, msg: Value) -> Value {
        let reply = self.request(msg.clone()).await;
        assert_eq!(reply["type"], "ack", "request {msg} failed: {reply}");
        reply
    }

    /// Reads until the server closes the socket; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("socket was not closed in time"),
                Ok(None) => return None,
                Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return frame.map(|f: CloseFrame| u16::from(f.code));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}
