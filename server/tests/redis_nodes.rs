//! Several real `oncolive` processes on one Redis, with real WebSocket clients: ordering across
//! nodes, a node killed mid-burst, and Redis going away for ten seconds. With
//! `ONCOLIVE_TEST_BROKER=redis-cluster`, on a three-master Redis Cluster instead.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use oncolive_server::domain::Command;
use oncolive_server::model::{Moderation, QuestionId, QuestionStatus};
use oncolive_server::protocol::{ErrorCode, ServerMsg};
use oncolive_testkit::api::WsTarget;
use oncolive_testkit::hub::{HubClient, WAIT};
use oncolive_testkit::node::Node;
use oncolive_testkit::redis::TestRedis;

fn nodes(redis: &TestRedis, n: usize) -> Vec<Node> {
    Node::on_redis(env!("CARGO_BIN_EXE_oncolive"), redis, n)
}

/// The approvals a client saw, as (seq, question id), in the order received.
fn approved(ws: &HubClient) -> Vec<(u64, QuestionId)> {
    ws.events
        .iter()
        .filter_map(|e| match e {
            ServerMsg::Question { seq, question }
                if question.status == QuestionStatus::Approved =>
            {
                Some((*seq, question.id))
            }
            _ => None,
        })
        .collect()
}

/// The texts of the questions a client received events about.
fn texts_seen(ws: &HubClient) -> HashSet<String> {
    ws.events
        .iter()
        .filter_map(|e| match e {
            ServerMsg::Question { question, .. } => Some(question.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_on_one_node_sees_what_a_moderator_on_another_approved_in_one_order()
-> anyhow::Result<()> {
    let redis = TestRedis::start();
    let nodes = nodes(&redis, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let s = a.live_session(Moderation::Pre).await?;
    let (t1, t2) = (
        a.join(s.id, Some("Zhang")).await?.token,
        c.join(s.id, Some("Li")).await?.token,
    );
    let (mut p1, _) = a.connect(s.id, &t1).await?;
    let (mut p2, _) = c.connect(s.id, &t2).await?;
    let (mut m, _) = b.connect(s.id, &s.moderator).await?;
    for ws in [&mut p1, &mut p2, &mut m] {
        ws.keep_events();
    }

    let mut asked = Vec::new();
    for i in 0..4 {
        let (who, text) = if i % 2 == 0 {
            (&mut p1, "From node A")
        } else {
            (&mut p2, "From node C")
        };
        asked.push(who.ask(format!("{text} #{i}")).await?.id);
    }
    // The moderator on B sees every pending question and approves them in reverse.
    for &q in asked.iter().rev() {
        m.question_event(|e| e.id == q).await?;
        m.ok(Command::Approve {
            question: q,
            text: None,
            original: false,
        })
        .await?;
    }
    let last = *asked.first().expect("asked");
    for ws in [&mut p1, &mut p2, &mut m] {
        ws.question_event(|q| q.id == last && q.status == QuestionStatus::Approved)
            .await?;
    }
    let order: Vec<QuestionId> = asked.iter().rev().copied().collect();
    for ws in [&p1, &p2, &m] {
        let seen = approved(ws);
        assert_eq!(seen.iter().map(|(_, q)| *q).collect::<Vec<_>>(), order);
    }
    // One order everywhere. The seqs differ by reader: a patient gets the public event of
    // another's question and the staff one of their own (each change is logged once per view).
    let seqs = |ws: &HubClient| approved(ws).iter().map(|(s, _)| *s).collect::<Vec<_>>();
    for ws in [&p1, &p2, &m] {
        assert!(seqs(ws).windows(2).all(|w| w[0] < w[1]));
    }
    Ok(())
}

/// One patient's burst on the node that will be killed: what it was acknowledged, and the
/// `seq` to resume from.
async fn burst(
    target: WsTarget,
    asks: usize,
    sent: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
) -> anyhow::Result<(Vec<String>, u64)> {
    let mut ws = HubClient::connect(&target).await?;
    let token = &target.token;
    ws.snapshot().await?;
    ws.consent().await?;
    let mut reqs = HashMap::new();
    for i in 0..asks {
        let text = format!("burst {} #{i}", &token[token.len() - 8..]);
        let req = ws.submit(Command::Ask { text: text.clone() }).await?;
        reqs.insert(req, text);
    }
    sent.fetch_add(1, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    // Until the node dies.
    ws.until_closed(|msg| {
        if let ServerMsg::Ack(ack) = msg
            && let Some(text) = ack.req.as_ref().and_then(|r| reqs.get(r))
        {
            acknowledged.push(text.clone());
            acked.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await?;
    Ok((acknowledged, ws.seq))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_burst_loses_no_acknowledged_question() -> anyhow::Result<()> {
    let redis = TestRedis::start();
    let mut nodes = nodes(&redis, 2);
    let s = nodes[0].live_session(Moderation::Post).await?;
    let (mut observer, _) = nodes[1].connect(s.id, &s.moderator).await?;
    observer.keep_events();
    // How many bursts have sent all their asks: the node dies only after every patient is in
    // (commands are pipelined, so the first bursts' acks can pass 100 before the last one has
    // its snapshot).
    let sent = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tokens = Vec::new();
    let mut bursts = Vec::new();
    for i in 0..8 {
        let token = nodes[0]
            .join(s.id, Some(format!("p{i}").as_str()))
            .await?
            .token;
        bursts.push(tokio::spawn(burst(
            nodes[0].ws_url(s.id, &token, None),
            200,
            sent.clone(),
            acked.clone(),
        )));
        tokens.push(token);
    }
    let deadline = Instant::now() + WAIT;
    while sent.load(Ordering::Relaxed) < 8 || acked.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "the burst did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes[0].kill();
    let mut all_acked = HashSet::new();
    for (token, task) in tokens.iter().zip(bursts) {
        let (acknowledged, seq) = task.await??;
        // The patient reconnects to B where it left off and gets what it missed.
        let mut ws = HubClient::connect(&nodes[1].ws_url(s.id, token, Some(seq))).await?;
        match ws.recv().await? {
            ServerMsg::Resumed { .. } => {}
            other => bail!("expected resumed, got {other:?}"),
        }
        // The missed events come before the pong; the last ones of the log may be for other
        // readers (staff views), so the client's seq need not reach the head.
        ws.ping().await?;
        // And a fresh snapshot on B holds every question it was acknowledged.
        let (_, snapshot) = nodes[1].connect(s.id, token).await?;
        let stored: HashSet<&str> = snapshot.questions.iter().map(|q| q.text.as_str()).collect();
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
    while !all_acked.is_subset(&texts_seen(&observer)) {
        assert!(Instant::now() < deadline, "the observer missed questions");
        observer.recv().await?;
    }
    let seqs: Vec<u64> = observer
        .events
        .iter()
        .filter_map(ServerMsg::event_seq)
        .collect();
    // Post-moderated: each question is logged for the public, then for staff; a moderator
    // gets every staff entry, so every other seq, none missing.
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 2),
        "a moderator sees every event meant for staff: {seqs:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_for_ten_seconds_then_everything_resumes() -> anyhow::Result<()> {
    let mut redis = TestRedis::start();
    if !redis.is_private() {
        eprintln!("skipped: REDIS_URL is set, the test cannot stop that server");
        return Ok(());
    }
    let nodes = nodes(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let s = a.live_session(Moderation::Post).await?;
    let token = a.join(s.id, Some("Wu")).await?.token;
    let (mut patient, _) = a.connect(s.id, &token).await?;
    let (mut staff, _) = b.connect(s.id, &s.moderator).await?;
    staff.keep_events();
    let before = patient.ask("before").await?;
    let (before_seq, _) = staff.question_event(|q| q.text == "before").await?;

    redis.stop();
    let down = Instant::now();
    let refused = patient
        .refused(Command::Ask {
            text: "during".into(),
        })
        .await?;
    assert_eq!(refused.code, ErrorCode::Unavailable, "{refused:?}");
    let readyz = b.get("/readyz", None).await?;
    assert_eq!(readyz.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    // Sockets stay open through the outage.
    while down.elapsed() < Duration::from_secs(10) {
        for ws in [&mut patient, &mut staff] {
            ws.ping().await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        match patient
            .request(Command::Ask {
                text: "after".into(),
            })
            .await?
        {
            Ok(ack) => break ack,
            Err(e) => assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}"),
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (event_seq, _) = staff.question_event(|q| q.text == "after").await?;
    // Post-moderated: the question is logged once for the public and once for staff.
    assert_eq!(
        event_seq,
        before_seq + 2,
        "nothing was stored for the refused ask, nothing lost"
    );
    assert_eq!(after.seq, event_seq);
    // What was acknowledged before the outage survived Redis's restart (AOF).
    let (_, snapshot) = b.connect(s.id, &s.moderator).await?;
    let texts: Vec<&str> = snapshot.questions.iter().map(|q| q.text.as_str()).collect();
    assert!(
        texts.contains(&"before") && texts.contains(&"after"),
        "{texts:?}"
    );
    assert!(!texts.contains(&"during"));
    assert_eq!(before.text, "before");
    Ok(())
}
