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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use oncolive_load::common::{approve_latencies, quantile_ms};
use oncolive_server::domain::Command;
use oncolive_server::model::{Moderation, NewSession, QuestionId, SessionId};
use oncolive_testkit::HubClient;
use oncolive_testkit::node::Node;
use tokio_tungstenite::tungstenite::Message;

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

fn start_node(args: &Args, prefix: &str) -> anyhow::Result<Node> {
    let server = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("oncolive"),
    };
    let server = server.to_str().context("the server's path is not UTF-8")?;
    let flags = [
        ("--messages-per-second", "1000000"),
        ("--asks-per-minute", "1000000"),
        ("--socket-queue", "100000"),
    ];
    let extra: Vec<&str> = flags.iter().flat_map(|(f, v)| [*f, *v]).collect();
    let redis = args.redis.as_deref().map(|url| (url, prefix));
    Node::start(server, redis, &extra).context("start a node (build it with --release)")
}

struct Setup {
    session: SessionId,
    moderator: String,
}

async fn session(node: &Node, moderation: Moderation) -> anyhow::Result<Setup> {
    let created = node
        .create(&NewSession {
            title: "Bench".into(),
            topic: String::new(),
            expert_name: "Dr. Bench".into(),
            scheduled_start: time::OffsetDateTime::now_utc(),
            moderation,
            expert_profile: None,
            record: None,
            videos: Vec::new(),
        })
        .await?;
    let session = created.session.id;
    node.set_state(
        session,
        &created.tokens.expert,
        oncolive_server::model::SessionState::Live,
    )
    .await?;
    Ok(Setup {
        session,
        moderator: created.tokens.moderator,
    })
}

async fn connect(node: &Node, setup: &Setup, token: &str) -> anyhow::Result<HubClient> {
    Ok(node.connect(setup.session, token).await?.0)
}

async fn patient(node: &Node, setup: &Setup) -> anyhow::Result<HubClient> {
    let token = node.patient(setup.session).await?;
    connect(node, setup, &token).await
}

async fn ask(client: &mut HubClient, text: String) -> anyhow::Result<QuestionId> {
    let ack = client.ok(Command::Ask { text }).await?;
    Ok(ack
        .question
        .context("an ask's ack carries the question")?
        .id)
}

/// Moderators edit as fast as acked while patients count events: (acked/s, events/s per listener).
async fn throughput(args: &Args, nodes: &[Node]) -> anyhow::Result<(f64, f64, u64)> {
    let setup = session(&nodes[0], Moderation::Post).await?;
    let mut asker = patient(&nodes[0], &setup).await?;
    let mut questions = Vec::new();
    for i in 0..args.writers {
        questions.push(ask(&mut asker, format!("question {i}")).await?);
    }
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut listeners = Vec::new();
    for i in 0..args.listeners {
        // Listeners count `question` frames without decoding them: the bench measures the
        // server, not this process's JSON parser.
        let mut ws = patient(&nodes[i % nodes.len()], &setup).await?.ws;
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
        let mut moderator = connect(&nodes[i % nodes.len()], &setup, &setup.moderator).await?;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let edit = Command::Edit {
                    question,
                    text: format!("edit {n} of question {question}"),
                };
                if moderator.ok(edit).await.is_err() {
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
    let setup = session(&nodes[0], Moderation::Pre).await?;
    let mut asker = patient(&nodes[0], &setup).await?;
    let mut pending = Vec::new();
    for i in 0..args.samples {
        pending.push(ask(&mut asker, format!("pending {i}")).await?);
    }
    let last = nodes.last().context("a node")?;
    let mut patient = patient(last, &setup).await?;
    let mut moderator = connect(&nodes[0], &setup, &setup.moderator).await?;
    approve_latencies(&mut moderator, &mut patient, &pending).await
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
        .map(|_| start_node(&args, &prefix))
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
        quantile_ms(&samples, 0.5),
        quantile_ms(&samples, 0.9),
        quantile_ms(&samples, 0.99),
        quantile_ms(&samples, 1.0),
    );
    Ok(())
}
