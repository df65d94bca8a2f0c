//! The cost of the broker on the hot path: events per second through one session, and the
//! latency from a moderator's `approve` to a patient receiving the approved question.
//!
//! Starts one or two real `oncolive` nodes (the release binary beside this one) and drives them
//! over real WebSockets:
//!
//! ```sh
//! cargo build --release -p oncolive-server -p oncolive-load-tests
//! B=/root/.cache/oncolive-target/release          # the workspace's target dir
//! $B/redis_bench                                   # in-memory broker, one node
//! $B/redis_bench --redis redis://127.0.0.1:PORT    # Redis, one node
//! $B/redis_bench --redis redis://127.0.0.1:PORT --nodes 2
//! ```
//!
//! With two nodes, writers and listeners are split over both, and the latency is measured from a
//! moderator on the first node to a patient on the second. Point it at a Redis of your own (never
//! a production one): keys go under a fresh prefix.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Parser, Debug)]
struct Args {
    /// Redis URL; without it the in-memory broker (one node only).
    #[arg(long)]
    redis: Option<String>,
    /// Server nodes (2 needs --redis).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Seconds of the throughput phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Moderators editing questions as fast as they are acknowledged.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Patients counting the events they receive.
    #[arg(long, default_value_t = 50)]
    listeners: usize,
    /// Approvals timed one after the other.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The `oncolive` binary (default: beside this one).
    #[arg(long)]
    server: Option<PathBuf>,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const SECRET: &str = "redis-bench-secret-shared-by-nodes";

struct Node {
    url: String,
    admin: String,
    child: Child,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_node(args: &Args, prefix: &str, n: usize) -> anyhow::Result<Node> {
    let server = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("oncolive"),
    };
    let dir = std::env::temp_dir().join(format!("oncolive-bench-{prefix}-{n}"));
    std::fs::create_dir_all(&dir)?;
    let ready = dir.join("ready.json");
    let mut cmd = std::process::Command::new(&server);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--messages-per-second",
            "1000000",
            "--asks-per-minute",
            "1000000",
        ])
        .args(["--joins-per-second", "100000", "--socket-queue", "100000"])
        .env("ONCOLIVE_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(url) = &args.redis {
        cmd.args(["--redis", url, "--redis-prefix", prefix]);
    }
    let child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {} (build it with --release)",
            server.display()
        )
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(info) = serde_json::from_str::<Value>(&text)
        {
            return Ok(Node {
                url: info["url"].as_str().context("url")?.to_owned(),
                admin: info["admin_token"].as_str().context("token")?.to_owned(),
                child,
                dir,
            });
        }
        if Instant::now() > deadline {
            bail!("the node did not become ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn connect(node: &Node, session: &str, token: &str) -> anyhow::Result<Socket> {
    let url = format!(
        "{}/api/sessions/{session}/ws?token={token}",
        node.url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let first = next_json(&mut ws).await?;
    if first["type"] != "snapshot" {
        bail!("expected a snapshot, got {first}");
    }
    Ok(ws)
}

async fn next_json(ws: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .context("no message within 10 s")?
            .context("socket closed")??;
        if let Message::Text(text) = msg {
            return Ok(serde_json::from_str(text.as_str())?);
        }
    }
}

async fn send(ws: &mut Socket, msg: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(msg.to_string().into())).await?;
    Ok(())
}

/// Sends a request and waits for its ack.
async fn request(ws: &mut Socket, req: &str, mut msg: Value) -> anyhow::Result<Value> {
    msg["req"] = json!(req);
    send(ws, msg).await?;
    loop {
        let reply = next_json(ws).await?;
        if reply["req"] == req {
            if reply["type"] != "ack" {
                bail!("request failed: {reply}");
            }
            return Ok(reply);
        }
    }
}

struct Setup {
    session: String,
    moderator: String,
    http: reqwest::Client,
}

async fn session(node: &Node, moderation: &str) -> anyhow::Result<Setup> {
    let http = reqwest::Client::new();
    let body: Value = http
        .post(format!("{}/api/sessions", node.url))
        .bearer_auth(&node.admin)
        .json(&json!({"title": "Bench", "expert_name": "Dr. Bench",
            "scheduled_start": "2026-12-01T12:00:00Z", "moderation": moderation}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let session = body["session"]["id"].as_str().context("id")?.to_owned();
    let expert = body["tokens"]["expert"].as_str().context("expert")?;
    http.post(format!("{}/api/sessions/{session}/state", node.url))
        .bearer_auth(expert)
        .json(&json!({"state": "live"}))
        .send()
        .await?
        .error_for_status()?;
    Ok(Setup {
        session,
        moderator: body["tokens"]["moderator"]
            .as_str()
            .context("mod")?
            .to_owned(),
        http,
    })
}

async fn join(setup: &Setup, node: &Node) -> anyhow::Result<String> {
    let body: Value = setup
        .http
        .post(format!("{}/api/sessions/{}/join", node.url, setup.session))
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["token"].as_str().context("token")?.to_owned())
}

/// Moderators edit as fast as acked while patients count events: (acked/s, events/s per listener).
async fn throughput(args: &Args, nodes: &[Node]) -> anyhow::Result<(f64, f64, u64)> {
    let setup = session(&nodes[0], "post").await?;
    let asker_token = join(&setup, &nodes[0]).await?;
    let mut asker = connect(&nodes[0], &setup.session, &asker_token).await?;
    let mut questions = Vec::new();
    for i in 0..args.writers {
        let ack = request(
            &mut asker,
            &format!("q{i}"),
            json!({"type": "ask", "text": format!("question {i}")}),
        )
        .await?;
        questions.push(ack["question"]["id"].as_u64().context("question id")?);
    }
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut listeners = Vec::new();
    for i in 0..args.listeners {
        let node = &nodes[i % nodes.len()];
        let token = join(&setup, node).await?;
        let mut ws = connect(node, &setup.session, &token).await?;
        let received = received.clone();
        let stop = stop.clone();
        listeners.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t))))
                        if t.as_str().starts_with(r#"{"type":"question""#) =>
                    {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(None) | Ok(Some(Err(_))) => break,
                }
            }
        }));
    }
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut writers = Vec::new();
    for (i, question) in questions.iter().copied().enumerate() {
        let node = &nodes[i % nodes.len()];
        let mut ws = connect(node, &setup.session, &setup.moderator).await?;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let msg = json!({"type": "edit", "question": question, "text": format!("edit {n} of question {question}")});
                if request(&mut ws, &format!("e{n}"), msg).await.is_err() {
                    break;
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for w in writers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = acked.load(Ordering::Relaxed);
    // Let the listeners drain what was acked.
    let drain = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < total * args.listeners as u64 && Instant::now() < drain
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in listeners {
        let _ = l.await;
    }
    let got = received.load(Ordering::Relaxed);
    Ok((
        total as f64 / elapsed,
        got as f64 / elapsed / args.listeners.max(1) as f64,
        got,
    ))
}

/// Approve on the first node, receive on the last: sorted latencies.
async fn latency(args: &Args, nodes: &[Node]) -> anyhow::Result<Vec<Duration>> {
    let setup = session(&nodes[0], "pre").await?;
    let asker_token = join(&setup, &nodes[0]).await?;
    let mut asker = connect(&nodes[0], &setup.session, &asker_token).await?;
    let mut pending = Vec::new();
    for i in 0..args.samples {
        let ack = request(
            &mut asker,
            &format!("a{i}"),
            json!({"type": "ask", "text": format!("pending {i}")}),
        )
        .await?;
        pending.push(ack["question"]["id"].as_u64().context("id")?);
    }
    let last = nodes.last().context("a node")?;
    let patient_token = join(&setup, last).await?;
    let mut patient = connect(last, &setup.session, &patient_token).await?;
    let mut moderator = connect(&nodes[0], &setup.session, &setup.moderator).await?;
    let mut samples = Vec::with_capacity(pending.len());
    for (i, q) in pending.iter().enumerate() {
        let started = Instant::now();
        send(
            &mut moderator,
            json!({"type": "approve", "req": format!("p{i}"), "question": q}),
        )
        .await?;
        loop {
            let msg = next_json(&mut patient).await?;
            if msg["type"] == "question"
                && msg["question"]["id"] == *q
                && msg["question"]["status"] == "approved"
            {
                samples.push(started.elapsed());
                break;
            }
        }
        // The moderator's ack (and its copy of the event) before the next sample.
        loop {
            let msg = next_json(&mut moderator).await?;
            if msg["req"] == format!("p{i}").as_str() {
                break;
            }
        }
    }
    samples.sort();
    Ok(samples)
}

fn pct(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes > 1 && args.redis.is_none() {
        bail!("--nodes 2 needs --redis: in-memory nodes share nothing");
    }
    let prefix = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let nodes = (0..args.nodes.max(1))
        .map(|n| start_node(&args, &prefix, n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let broker = if args.redis.is_some() {
        "redis"
    } else {
        "memory"
    };
    let (acked, per_listener, delivered) = throughput(&args, &nodes).await?;
    let samples = latency(&args, &nodes).await?;
    println!(
        "broker={broker} nodes={} writers={} listeners={}: {acked:.0} events/s stored (edits acked), \
         {per_listener:.0} events/s received per listener ({delivered} deliveries); \
         approve→delivery over {} samples: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        nodes.len(),
        args.writers,
        args.listeners,
        samples.len(),
        pct(&samples, 0.5),
        pct(&samples, 0.9),
        pct(&samples, 0.99),
        pct(&samples, 1.0),
    );
    Ok(())
}
