//! The hot path: one event fanned out to N local WebSocket clients through the real server
//! (started in this process on 127.0.0.1:0, in-memory broker). One iteration = a moderator
//! edits an approved question, and every one of the N patients has received the `question`
//! event. Reported per event; divide by N for the cost per delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use oncolive_load::common::{Api, Ws, WsOptions, ws_connect};
use oncolive_load::local::LocalServer;
use oncolive_server::protocol::ClientMsg;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

struct Setup {
    moderator: futures_util::stream::SplitSink<Ws, Message>,
    question: u64,
    received: Arc<AtomicU64>,
    notify: Arc<Notify>,
    /// Kept running for the iterations; never stopped explicitly (the bench process exits).
    _server: LocalServer,
}

async fn next_text(ws: &mut Ws) -> serde_json::Value {
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            return serde_json::from_str(t.as_str()).expect("json");
        }
    }
}

async fn setup(n: usize) -> Setup {
    let server = LocalServer::start(&[]).await.expect("server starts");
    let base = server.url.clone();
    let admin = server.admin.clone();
    let http = Api::new(&base);
    let created = http.create_session(&admin, "bench").await.expect("session");
    let session = created.session.id;
    let mut moderator = ws_connect(
        &base,
        session,
        &created.tokens.moderator,
        None,
        WsOptions::default(),
    )
    .await
    .expect("moderator");
    next_text(&mut moderator).await;
    // One question, approved, that the iterations edit.
    let asker = http.join(session, "asker").await.expect("join").token;
    let mut patient = ws_connect(&base, session, &asker, None, WsOptions::default())
        .await
        .expect("ws");
    next_text(&mut patient).await;
    let ask = ClientMsg::Ask {
        req: None,
        text: "bench question".into(),
    };
    patient
        .send(Message::Text(
            serde_json::to_string(&ask).expect("json").into(),
        ))
        .await
        .expect("send");
    let question = loop {
        let v = next_text(&mut moderator).await;
        if v["type"] == "question" {
            break v["question"]["id"].as_u64().expect("id");
        }
    };
    let approve = ClientMsg::Approve {
        req: None,
        question,
        text: None,
    };
    moderator
        .send(Message::Text(
            serde_json::to_string(&approve).expect("json").into(),
        ))
        .await
        .expect("send");
    drop(patient);

    let received = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(Notify::new());
    for i in 0..n {
        let token = http
            .join(session, &format!("p{i}"))
            .await
            .expect("join")
            .token;
        let mut ws = ws_connect(&base, session, &token, None, WsOptions::default())
            .await
            .expect("ws");
        next_text(&mut ws).await;
        let (received, notify) = (received.clone(), notify.clone());
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
    let (moderator, mut moderator_rx) = moderator.split();
    tokio::spawn(async move { while let Some(Ok(_)) = moderator_rx.next().await {} });
    Setup {
        moderator,
        question,
        received,
        notify,
        _server: server,
    }
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
        let mut s = rt.block_on(setup(n));
        let mut edit = 0u64;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("event_to_n_sockets", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        edit += 1;
                        let base = s.received.load(Ordering::Relaxed);
                        let msg = ClientMsg::Edit {
                            req: None,
                            question: s.question,
                            text: format!("bench question, edit {edit}"),
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
