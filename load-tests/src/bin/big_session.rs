//! Large sessions: how long a fresh moderator waits for a complete view (the snapshot and all
//! its parts), and the latency from a moderator's `approve` to a patient receiving the question,
//! at a given number of questions (a quarter of them pending).
//!
//! Starts a real `oncolive` node (the release binary beside this one) and drives it over real
//! WebSockets:
//!
//! ```sh
//! cargo build --release -p oncolive-server -p oncolive-load-tests
//! B=/root/.cache/oncolive-target/release          # the workspace's target dir
//! $B/big_session                                   # in-memory broker
//! $B/big_session --redis redis://127.0.0.1:PORT    # Redis (a private one: keys get a fresh prefix)
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::future::try_join_all;
use oncolive_load::common::{approve_latencies, quantile_ms};
use oncolive_server::domain::Command;
use oncolive_server::model::{Moderation, NewSession, QuestionId, SessionId};
use oncolive_testkit::node::Node;

#[derive(Parser, Debug)]
struct Args {
    /// Redis URL; without it the in-memory broker.
    #[arg(long)]
    redis: Option<String>,
    /// Session sizes to measure, in questions (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000,20000")]
    sizes: Vec<usize>,
    /// Fresh moderators timed opening each session.
    #[arg(long, default_value_t = 5)]
    opens: usize,
    /// Approvals timed one after the other per session.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Sockets asking (and moderators approving) at once while a session is filled.
    #[arg(long, default_value_t = 32)]
    fillers: usize,
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

async fn live_session(node: &Node) -> anyhow::Result<Setup> {
    let created = node
        .create(&NewSession {
            title: "A large session".into(),
            topic: String::new(),
            expert_name: "Dr. Bench".into(),
            scheduled_start: time::OffsetDateTime::now_utc(),
            moderation: Moderation::Pre,
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

/// `n` questions, asked by `fillers` patients at once, all pending; their ids.
async fn fill(node: &Node, setup: &Setup, n: usize, fillers: usize) -> anyhow::Result<Vec<u64>> {
    let per = n.div_ceil(fillers.max(1));
    let askers = (0..fillers.max(1)).map(|f| async move {
        let token = node.patient(setup.session).await?;
        let (mut client, _) = node.connect(setup.session, &token).await?;
        let mut ids = Vec::new();
        for i in (f * per)..((f + 1) * per).min(n) {
            let text = format!(
                "Question {i}: after treatment for colorectal cancer, how often should I have a \
                 colonoscopy, and is a blood test enough in between?"
            );
            let q = client.ok_question(Command::Ask { text }).await?;
            ids.push(q.id);
        }
        anyhow::Ok(ids)
    });
    let mut ids: Vec<u64> = try_join_all(askers).await?.into_iter().flatten().collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Approves `ids` with `fillers` moderators at once.
async fn approve_all(
    node: &Node,
    setup: &Setup,
    ids: &[QuestionId],
    fillers: usize,
) -> anyhow::Result<()> {
    let chunks: Vec<&[QuestionId]> = ids
        .chunks(ids.len().div_ceil(fillers.max(1)).max(1))
        .collect();
    // Opened one after the other: dozens of full snapshots of a large session at once are a
    // herd this bench does not measure (see docs/benchmarks.md, "Large sessions").
    let mut clients = Vec::with_capacity(chunks.len());
    for _ in &chunks {
        clients.push(node.connect(setup.session, &setup.moderator).await?.0);
    }
    let moderators = chunks
        .into_iter()
        .zip(clients)
        .map(|(chunk, mut m)| async move {
            for &question in chunk {
                m.ok(Command::Approve {
                    question,
                    text: None,
                    original: false,
                })
                .await?;
            }
            anyhow::Ok(())
        });
    try_join_all(moderators).await?;
    Ok(())
}

/// A fresh moderator's time from opening the socket to a complete view, `opens` times.
async fn open_times(
    node: &Node,
    setup: &Setup,
    opens: usize,
    expect: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(opens);
    for _ in 0..opens {
        let started = Instant::now();
        let (client, snapshot) = node.connect(setup.session, &setup.moderator).await?;
        times.push(started.elapsed());
        if snapshot.questions.len() != expect {
            bail!(
                "the view has {} questions, not {expect}",
                snapshot.questions.len()
            );
        }
        drop(client);
    }
    times.sort();
    Ok(times)
}

/// Approve on a moderator's socket, receive on a patient's: sorted latencies.
async fn approve_latency(
    node: &Node,
    setup: &Setup,
    pending: &[QuestionId],
) -> anyhow::Result<Vec<Duration>> {
    let token = node.patient(setup.session).await?;
    let (mut patient, _) = node.connect(setup.session, &token).await?;
    let (mut moderator, _) = node.connect(setup.session, &setup.moderator).await?;
    approve_latencies(&mut moderator, &mut patient, pending).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!(
        "bench-big-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let node = start_node(&args, &prefix)?;
    let broker = if args.redis.is_some() {
        "redis"
    } else {
        "memory"
    };
    println!(
        "| broker | questions (pending) | fresh moderator, complete view: median / max ms | \
         approve → patient over {} samples: p50 / p99 ms |",
        args.samples
    );
    println!("|---|---|---|---|");
    for &size in &args.sizes {
        let setup = live_session(&node).await?;
        let filled = Instant::now();
        let ids = fill(&node, &setup, size, args.fillers).await?;
        // A quarter pending, as in the issue's 20,000 with 5,000 pending.
        let pending = size / 4;
        approve_all(&node, &setup, &ids[pending..], args.fillers).await?;
        eprintln!(
            "{broker}: {size} questions stored and moderated in {:.1} s",
            filled.elapsed().as_secs_f64()
        );
        let opens = open_times(&node, &setup, args.opens, size).await?;
        let samples = args.samples.min(pending);
        let latencies = approve_latency(&node, &setup, &ids[..samples]).await?;
        println!(
            "| {broker} | {size} ({pending}) | {:.1} / {:.1} | {:.2} / {:.2} |",
            quantile_ms(&opens, 0.5),
            quantile_ms(&opens, 1.0),
            quantile_ms(&latencies, 0.5),
            quantile_ms(&latencies, 0.99),
        );
    }
    Ok(())
}
