//! Several real `oncolive` processes on one Redis, with real WebSocket clients: ordering across
//! nodes, a node killed mid-burst, and Redis going away for ten seconds.

#[path = "common/redis.rs"]
mod redis_server;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use redis_server::{Node, RedisServer, unique_prefix};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket client that keeps every event it receives.
struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The highest event seq received.
    seq: u64,
    /// Events (`session`, `question`, `question_removed`, `votes`) in the order received.
    events: Vec<Value>,
    next_req: u64,
}

fn is_event(msg: &Value) -> bool {
    matches!(
        msg["type"].as_str(),
        Some("session" | "question" | "question_removed" | "votes")
    )
}

impl Ws {
    /// Connects and returns the first message (`snapshot` or `resumed`).
    async fn connect(url: &str) -> (Ws, Value) {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        let mut ws = Ws {
            ws,
            seq: 0,
            events: Vec::new(),
            next_req: 0,
        };
        let first = ws.recv().await.expect("a first message");
        ws.seq = first["seq"].as_u64().expect("first message has seq");
        (ws, first)
    }

    /// The next text message; `None` when the socket closed or failed.
    async fn recv(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait")?
                .ok()?;
            match msg {
                Message::Text(text) => {
                    let msg: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    if is_event(&msg) {
                        let seq = msg["seq"].as_u64().expect("event seq");
                        assert!(seq > self.seq, "seq went from {} to {seq}", self.seq);
                        self.seq = seq;
                        self.events.push(msg.clone());
                    }
                    return Some(msg);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    async fn send(&mut self, mut msg: Value) -> String {
        self.next_req += 1;
        let req = format!("r{}", self.next_req);
        msg["req"] = json!(req);
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send");
        req
    }

    /// Sends a request and returns its reply (ack, error or pong).
    async fn request(&mut self, msg: Value) -> Value {
        let req = self.send(msg).await;
        loop {
            let reply = self.recv().await.expect("socket stays open");
            if reply["req"] == req.as_str() {
                return reply;
            }
        }
    }

    async fn ok(&mut self, msg: Value) -> Value {
        let reply = self.request(msg.clone()).await;
        assert_eq!(reply["type"], "ack", "{msg} failed: {reply}");
        reply
    }

    /// Reads until an event matching `pred` arrives (or was already received).
    async fn event(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.events.iter().find(|e| pred(e)) {
            return found.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "the expected event did not come");
            let msg = self.recv().await.expect("socket stays open");
            if is_event(&msg) && pred(&msg) {
                return msg;
            }
        }
    }
}

struct Http {
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            client: reqwest::Client::new(),
        }
    }

    /// Creates a live session through `node`; returns (id, expert token, moderator token).
    async fn live_session(&self, node: &Node, moderation: &str) -> (String, String, String) {
        let res = self
            .client
            .post(format!("{}/api/sessions", node.url))
            .bearer_auth(&node.admin_token)
            .json(&json!({
                "title": "Lung cancer screening",
                "topic": "Low-dose CT",
                "expert_name": "Dr. Wang",
                "scheduled_start": "2026-12-01T12:00:00Z",
                "moderation": moderation,
            }))
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        let id = body["session"]["id"].as_str().expect("id").to_owned();
        let expert = body["tokens"]["expert"]
            .as_str()
            .expect("expert")
            .to_owned();
        let moderator = body["tokens"]["moderator"]
            .as_str()
            .expect("mod")
            .to_owned();
        let res = self
            .client
            .post(format!("{}/api/sessions/{id}/state", node.url))
            .bearer_auth(&expert)
            .json(&json!({ "state": "live" }))
            .send()
            .await
            .expect("go live");
        assert_eq!(res.status(), 200);
        (id, expert, moderator)
    }

    async fn join(&self, node: &Node, session: &str, name: &str) -> String {
        let res = self
            .client
            .post(format!("{}/api/sessions/{session}/join", node.url))
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("join");
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }
}

fn nodes(redis: &RedisServer, n: usize) -> Vec<Node> {
    let prefix = unique_prefix();
    (0..n)
        .map(|_| Node::start(&redis.url, &prefix, &[]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_on_one_node_sees_what_a_moderator_on_another_approved_in_one_order() {
    let redis = RedisServer::start();
    let nodes = nodes(&redis, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let http = Http::new();
    let (id, _, moderator) = http.live_session(a, "pre").await;
    let (t1, t2) = (
        http.join(a, &id, "Zhang").await,
        http.join(c, &id, "Li").await,
    );
    let (mut p1, _) = Ws::connect(&a.ws_url(&id, &t1, None)).await;
    let (mut p2, _) = Ws::connect(&c.ws_url(&id, &t2, None)).await;
    let (mut m, _) = Ws::connect(&b.ws_url(&id, &moderator, None)).await;

    let mut asked = Vec::new();
    for i in 0..4 {
        let (who, text) = if i % 2 == 0 {
            (&mut p1, "From node A")
        } else {
            (&mut p2, "From node C")
        };
        let ack = who
            .ok(json!({ "type": "ask", "text": format!("{text} #{i}") }))
            .await;
        asked.push(ack["question"]["id"].as_u64().expect("id"));
    }
    // The moderator on B sees every pending question and approves them in reverse.
    for q in asked.iter().rev() {
        m.event(|e| e["type"] == "question" && e["question"]["id"] == *q)
            .await;
        m.ok(json!({ "type": "approve", "question": q })).await;
    }
    let approved = |ws: &Ws| -> Vec<(u64, u64)> {
        ws.events
            .iter()
            .filter(|e| e["type"] == "question" && e["question"]["status"] == "approved")
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap_or(0),
                    e["question"]["id"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let last = *asked.first().expect("asked");
    for ws in [&mut p1, &mut p2, &mut m] {
        ws.event(|e| e["question"]["id"] == last && e["question"]["status"] == "approved")
            .await;
    }
    let order: Vec<u64> = asked.iter().rev().copied().collect();
    for ws in [&p1, &p2, &m] {
        let seen = approved(ws);
        assert_eq!(seen.iter().map(|(_, q)| *q).collect::<Vec<_>>(), order);
    }
    assert_eq!(
        approved(&p1),
        approved(&p2),
        "same events with the same seq on A and C"
    );
    assert_eq!(approved(&p1), approved(&m));
}

/// One patient's burst on the node that will be killed: what it was acknowledged.
async fn burst(url: String, asks: usize, acked: Arc<AtomicUsize>) -> (Vec<String>, u64) {
    let (mut ws, _) = Ws::connect(&url).await;
    let mut reqs = HashMap::new();
    for i in 0..asks {
        let text = format!("burst {} #{i}", &url[url.len() - 8..]);
        let req = ws.send(json!({ "type": "ask", "text": text })).await;
        reqs.insert(req, text);
    }
    let mut acknowledged = Vec::new();
    while let Some(msg) = ws.recv().await {
        if msg["type"] == "ack"
            && let Some(text) = msg["req"].as_str().and_then(|r| reqs.get(r))
        {
            acknowledged.push(text.clone());
            acked.fetch_add(1, Ordering::Relaxed);
        }
    }
    (acknowledged, ws.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_burst_loses_no_acknowledged_question() {
    let redis = RedisServer::start();
    let mut nodes = nodes(&redis, 2);
    let http = Http::new();
    let (id, _, moderator) = http.live_session(&nodes[0], "post").await;
    let (mut observer, _) = Ws::connect(&nodes[1].ws_url(&id, &moderator, None)).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tokens = Vec::new();
    let mut bursts = Vec::new();
    for i in 0..8 {
        let token = http.join(&nodes[0], &id, &format!("p{i}")).await;
        bursts.push(tokio::spawn(burst(
            nodes[0].ws_url(&id, &token, None),
            200,
            acked.clone(),
        )));
        tokens.push(token);
    }
    let deadline = Instant::now() + WAIT;
    while acked.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "the burst did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes[0].kill();
    let mut all_acked = HashSet::new();
    for (token, task) in tokens.iter().zip(bursts) {
        let (acknowledged, seq) = task.await.expect("burst task");
        // The patient reconnects to B where it left off and gets what it missed.
        let (mut ws, first) = Ws::connect(&nodes[1].ws_url(&id, token, Some(seq))).await;
        assert_eq!(first["type"], "resumed", "{first}");
        let head = first["seq"].as_u64().expect("head");
        while ws.seq < head {
            ws.recv().await.expect("missed events");
        }
        // And a fresh snapshot on B holds every question it was acknowledged.
        let (_, snapshot) = Ws::connect(&nodes[1].ws_url(&id, token, None)).await;
        let stored: HashSet<&str> = snapshot["questions"]
            .as_array()
            .expect("questions")
            .iter()
            .filter_map(|q| q["text"].as_str())
            .collect();
        for text in &acknowledged {
            assert!(
                stored.contains(text.as_str()),
                "acknowledged {text:?} is lost"
            );
        }
        all_acked.extend(acknowledged);
    }
    assert!(all_acked.len() >= 100);
    assert!(all_acked.len() < 1600, "the kill came mid-burst");
    // The observer on B saw every acknowledged question, in one gap-free order.
    let deadline = Instant::now() + WAIT;
    loop {
        let seen: HashSet<String> = observer
            .events
            .iter()
            .filter_map(|e| e["question"]["text"].as_str().map(str::to_owned))
            .collect();
        if all_acked.is_subset(&seen) {
            break;
        }
        assert!(Instant::now() < deadline, "the observer missed questions");
        observer.recv().await.expect("observer stays connected");
    }
    let seqs: Vec<u64> = observer
        .events
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "a moderator sees every event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_for_ten_seconds_then_everything_resumes() {
    let mut redis = RedisServer::start();
    if !redis.is_private() {
        eprintln!("skipped: REDIS_URL is set, the test cannot stop that server");
        return;
    }
    let nodes = nodes(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let http = Http::new();
    let (id, _, moderator) = http.live_session(a, "post").await;
    let token = http.join(a, &id, "Wu").await;
    let (mut patient, _) = Ws::connect(&a.ws_url(&id, &token, None)).await;
    let (mut staff, _) = Ws::connect(&b.ws_url(&id, &moderator, None)).await;
    let before = patient.ok(json!({ "type": "ask", "text": "before" })).await;
    let before_seq = staff.event(|e| e["question"]["text"] == "before").await["seq"]
        .as_u64()
        .expect("seq");

    redis.stop();
    let down = Instant::now();
    let refused = patient
        .request(json!({ "type": "ask", "text": "during" }))
        .await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    let readyz = reqwest::get(format!("{}/readyz", b.url))
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 503);
    // Sockets stay open through the outage.
    while down.elapsed() < Duration::from_secs(10) {
        for ws in [&mut patient, &mut staff] {
            assert_eq!(ws.request(json!({ "type": "ping" })).await["type"], "pong");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        let reply = patient
            .request(json!({ "type": "ask", "text": "after" }))
            .await;
        if reply["type"] == "ack" {
            break reply;
        }
        assert_eq!(reply["code"], "unavailable", "{reply}");
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let event = staff.event(|e| e["question"]["text"] == "after").await;
    assert_eq!(
        event["seq"].as_u64(),
        Some(before_seq + 1),
        "nothing was stored for the refused ask, nothing lost"
    );
    assert_eq!(after["seq"], event["seq"]);
    // What was acknowledged before the outage survived Redis's restart (AOF).
    let (_, snapshot) = Ws::connect(&b.ws_url(&id, &moderator, None)).await;
    let texts: Vec<&str> = snapshot["questions"]
        .as_array()
        .expect("questions")
        .iter()
        .filter_map(|q| q["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"before") && texts.contains(&"after"),
        "{texts:?}"
    );
    assert!(!texts.contains(&"during"));
    assert_eq!(before["question"]["text"], "before");
}
