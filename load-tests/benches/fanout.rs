//! The hot path: one event fanned out to N local WebSocket clients through the real server
//! (started in this process on 127.0.0.1:0, in-memory broker). One iteration = a moderator
//! edits an approved question, and every one of the N patients has received the `question`
//! event. Reported per event; divide by N for the cost per delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use oncolive_load::common::local_config;
use oncolive_server::domain::Command;
use oncolive_server::model::Moderation;
use oncolive_server::protocol::ClientMsg;
use oncolive_testkit::hub::Socket;
use oncolive_testkit::{TestApp, spawn_app};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

struct Setup {
    moderator: futures_util::stream::SplitSink<Socket, Message>,
    question: u64,
    received: Arc<AtomicU64>,
    notify: Arc<Notify>,
    /// Kept running for the iterations; never stopped explicitly (the bench process exits).
    _server: TestApp,
}

async fn setup(n: usize) -> anyhow::Result<Setup> {
    let server = spawn_app(local_config()).await?;
    let s = server.create_session(Moderation::Pre).await?;
    let (mut moderator, _) = server.connect(s.id, &s.moderator).await?;
    // One question, approved, that the iterations edit.
    let asker = server.patient(s.id).await?;
    let (mut patient, _) = server.connect(s.id, &asker).await?;
    let question = patient
        .ok(Command::Ask {
            text: "bench question".into(),
        })
        .await?
        .question
        .map(|q| q.id)
        .ok_or_else(|| anyhow::anyhow!("an ask is acknowledged with its question"))?;
    moderator
        .ok(Command::Approve {
            question,
            text: None,
            original: false,
        })
        .await?;
    drop(patient);

    let received = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    for _ in 0..n {
        let token = server.patient(s.id).await?;
        let (client, _) = server.connect(s.id, &token).await?;
        let mut ws = client.ws;
        let (received, notify) = (received.clone(), notify.clone());
        // The measured path: count `question` events without decoding them.
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg
                    && t.as_str().starts_with(r#"{"type":"question""#)
                {
                    received.fetch_add(1, Ordering::Relaxed);
                    notify.notify_one();
                }
            }
        });
    }
    // Let the approval's deliveries (to those already connected) pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The moderator gets every event and ack too: keep reading them.
    let (moderator, mut moderator_rx) = moderator.ws.split();
    tokio::spawn(async move { while let Some(Ok(_)) = moderator_rx.next().await {} });
    Ok(Setup {
        moderator,
        question,
        received,
        notify,
        _server: server,
    })
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("fanout");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for n in [100usize, 1000] {
        let mut s = rt.block_on(setup(n)).expect("bench set-up");
        let mut edit = 0u64;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("event_to_n_sockets", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        edit += 1;
                        let base = s.received.load(Ordering::Relaxed);
                        let msg = ClientMsg {
                            req: None,
                            request: oncolive_server::protocol::Request::Command(Command::Edit {
                                question: s.question,
                                text: format!("bench question, edit {edit}"),
                            }),
                        };
                        s.moderator
                            .send(Message::Text(
                                serde_json::to_string(&msg).expect("json").into(),
                            ))
                            .await
                            .expect("send");
                        while s.received.load(Ordering::Relaxed) < base + n as u64 {
                            s.notify.notified().await;
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
