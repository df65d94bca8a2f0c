//! The Redis broker through its trait, with two brokers on one Redis standing for two nodes.
//!
//! Each test starts its own `redis-server` (or uses `REDIS_URL`; the fault tests then skip), or
//! with `ONCOLIVE_TEST_BROKER=redis-cluster` its own three-master Redis Cluster.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use oncolive_server::broker::{Broker, BrokerError, RedisBroker, RedisConfig, Replay};
use oncolive_server::domain::{Actor, Command, Refusal, Reply};
use oncolive_server::model::{
    Moderation, NewSession, QuestionStatus, Role, SessionId, SessionState,
};
use oncolive_server::protocol::Event;
use oncolive_testkit::redis::{TestRedis, unique_prefix};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

fn config(redis: &TestRedis, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: redis.url().to_owned(),
        prefix: prefix.to_owned(),
        ..RedisConfig::default()
    }
}

async fn broker(config: RedisConfig) -> Arc<RedisBroker> {
    Arc::new(RedisBroker::connect(config).await.expect("broker connects"))
}

/// Two brokers ("nodes") on one fresh prefix.
async fn two_nodes(redis: &TestRedis) -> (Arc<RedisBroker>, Arc<RedisBroker>) {
    let prefix = unique_prefix();
    (
        broker(config(redis, &prefix)).await,
        broker(config(redis, &prefix)).await,
    )
}

fn actor(role: Role) -> Actor {
    Actor {
        id: Uuid::now_v7(),
        role,
        name: Some(format!("{role:?}")),
        links_version: 0,
        consented_at: Some(time::OffsetDateTime::now_utc()),
    }
}

async fn live_session(broker: &RedisBroker, moderation: Moderation) -> SessionId {
    let now = OffsetDateTime::now_utc();
    let session = NewSession {
        title: "Breast cancer screening".into(),
        topic: String::new(),
        expert_name: "Dr. Li".into(),
        scheduled_start: now,
        moderation,
        expert_profile: None,
        record: None,
        videos: Vec::new(),
    }
    .into_session(Uuid::now_v7(), now);
    let id = session.id;
    broker.create_session(session).await.expect("create");
    broker
        .apply(
            id,
            &actor(Role::Admin),
            Command::SetState {
                state: SessionState::Live,
            },
        )
        .await
        .expect("go live");
    id
}

async fn ask(broker: &RedisBroker, id: SessionId, patient: &Actor, text: &str) -> u64 {
    let ack = broker
        .apply(id, patient, Command::Ask { text: text.into() })
        .await
        .expect("ask");
    match ack.reply {
        Reply::Question(q) => q.id,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Receives events until `head`, asserting they come in order with no gap.
async fn events_until(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    after: u64,
    head: u64,
) -> Vec<Arc<Event>> {
    let mut seen = Vec::new();
    let mut last = after;
    while last < head {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event after {last} (waiting for {head})"))
            .expect("receiver open");
        assert_eq!(event.seq, last + 1, "events out of order or with a gap");
        last = event.seq;
        seen.push(event);
    }
    seen
}

fn frame(event: &Event) -> Value {
    serde_json::from_str(event.frame.as_str()).expect("frame is JSON")
}

#[tokio::test]
async fn events_of_both_nodes_form_one_contiguous_order() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Post).await;
    let mut rx_a = a.subscribe(id).await.expect("subscribe a");
    let mut rx_b = b.subscribe(id).await.expect("subscribe b");
    let head = a.replay(id, 0).await.expect("replay");
    let Replay::Events { head: start, .. } = head else {
        panic!("history reaches back to 0");
    };
    let asks = (0..40).map(|i| {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let patient = actor(Role::Patient);
            ask(&node, id, &patient, &format!("question {i}")).await
        }
    });
    let mut ids = join_all(asks).await;
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=40).collect::<Vec<_>>(),
        "question ids are unique and dense"
    );
    let on_a = events_until(&mut rx_a, start, start + 40).await;
    let on_b = events_until(&mut rx_b, start, start + 40).await;
    let frames_a: Vec<_> = on_a.iter().map(|e| e.frame.as_str().to_owned()).collect();
    let frames_b: Vec<_> = on_b.iter().map(|e| e.frame.as_str().to_owned()).collect();
    assert_eq!(frames_a, frames_b, "both nodes see the same log");
    for (i, event) in on_a.iter().enumerate() {
        assert_eq!(frame(event)["seq"], start + 1 + i as u64);
    }
}

#[tokio::test]
async fn a_question_is_approved_once_when_two_moderators_race() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Pre).await;
    for round in 0..10 {
        let q = ask(&a, id, &actor(Role::Patient), &format!("q{round}")).await;
        let approve = Command::Approve {
            question: q,
            text: None,
            original: false,
        };
        let (m1, m2) = (actor(Role::Moderator), actor(Role::Moderator));
        let (ra, rb) = tokio::join!(a.apply(id, &m1, approve.clone()), b.apply(id, &m2, approve),);
        let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            ok,
            1,
            "exactly one approval wins: {:?} / {:?}",
            ra.err(),
            rb.err()
        );
        for r in [ra, rb] {
            if let Err(e) = r {
                assert!(
                    matches!(e, BrokerError::Refused(Refusal::Conflict(_))),
                    "{e}"
                );
            }
        }
    }
    let view = b
        .view(id, Role::Moderator, Uuid::now_v7())
        .await
        .expect("view");
    assert!(
        view.questions
            .iter()
            .all(|q| q.status == QuestionStatus::Approved)
    );
}

#[tokio::test]
async fn votes_count_once_and_are_flushed_once() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Post).await;
    let q = ask(
        &a,
        id,
        &actor(Role::Patient),
        "Is HPV vaccination useful after 26?",
    )
    .await;
    let mut rx = b.subscribe(id).await.expect("subscribe");
    let patients: Vec<Actor> = (0..30).map(|_| actor(Role::Patient)).collect();
    // Every patient votes twice, once through each node, all at once.
    let votes = patients.iter().flat_map(|p| {
        [a.clone(), b.clone()]
            .map(|node| async move { node.apply(id, p, Command::Vote { question: q }).await })
    });
    for result in join_all(votes).await {
        let ack = result.expect("vote");
        assert!(matches!(ack.reply, Reply::Voted(true)));
    }
    // Both nodes flush at once: the changes go out in one event.
    let (fa, fb) = tokio::join!(a.flush_votes(id), b.flush_votes(id));
    fa.expect("flush a");
    fb.expect("flush b");
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a votes event")
        .expect("open");
    assert_eq!(
        frame(&event)["votes"],
        serde_json::json!([{ "id": q, "votes": 30 }])
    );
    a.flush_votes(id).await.expect("flush");
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rx.recv())
            .await
            .is_err(),
        "nothing more to flush"
    );
    let view = a
        .view(id, Role::Patient, patients[0].id)
        .await
        .expect("view");
    assert_eq!(view.questions[0].votes, 30);
    assert_eq!(view.my_votes, vec![q]);
    let stranger = a
        .view(id, Role::Patient, Uuid::now_v7())
        .await
        .expect("view");
    assert!(stranger.my_votes.is_empty());

    // Unvote twice counts once; a missing question is not found.
    for _ in 0..2 {
        b.apply(id, &patients[0], Command::Unvote { question: q })
            .await
            .expect("unvote");
    }
    let missing = a
        .apply(id, &patients[0], Command::Vote { question: 999 })
        .await;
    assert!(matches!(
        missing,
        Err(BrokerError::Refused(Refusal::NotFound(999)))
    ));
    let forbidden = a
        .apply(id, &actor(Role::Moderator), Command::Vote { question: q })
        .await;
    assert!(matches!(
        forbidden,
        Err(BrokerError::Refused(Refusal::Forbidden(_)))
    ));
    let view = b
        .view(id, Role::Moderator, Uuid::now_v7())
        .await
        .expect("view");
    assert_eq!(view.questions[0].votes, 29);
}

/// Every node flushes vote counts on its own timer; together they still send about one
/// `votes` event per flush interval, not one per node and tick.
#[tokio::test]
async fn vote_updates_are_coalesced_over_nodes() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Post).await;
    let q = ask(&a, id, &actor(Role::Patient), "Does a mammogram hurt?").await;
    let mut rx = b.subscribe(id).await.expect("subscribe");
    // For about a second: a vote, then both nodes flush, 40 times (each flush has a change).
    let started = std::time::Instant::now();
    let rounds = 40;
    for _ in 0..rounds {
        a.apply(id, &actor(Role::Patient), Command::Vote { question: q })
            .await
            .expect("vote");
        let (fa, fb) = tokio::join!(a.flush_votes(id), b.flush_votes(id));
        fa.expect("flush a");
        fb.expect("flush b");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = started.elapsed();
    // The last changes go out with the next flush after the interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.flush_votes(id).await.expect("flush");
    let mut events = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        events.push(frame(&event));
    }
    let votes: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "votes").collect();
    // One per 200 ms at most (and the final one): without coalescing, one per round.
    let most = took.as_millis() as usize / 200 + 2;
    assert!(
        !votes.is_empty() && votes.len() <= most,
        "{} votes events in {took:?} ({rounds} rounds)",
        votes.len()
    );
    assert_eq!(
        votes.last().map(|e| e["votes"].clone()),
        Some(serde_json::json!([{ "id": q, "votes": rounds }])),
        "the last event has every vote"
    );
}

#[tokio::test]
async fn merge_moves_voters_and_counts_a_double_voter_once() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Post).await;
    let (p1, p2, p3) = (
        actor(Role::Patient),
        actor(Role::Patient),
        actor(Role::Patient),
    );
    let target = ask(&a, id, &p1, "Does smoking cause bladder cancer?").await;
    let dup = ask(&a, id, &p2, "Is bladder cancer linked to smoking?").await;
    for p in [&p1, &p2] {
        a.apply(id, p, Command::Vote { question: target })
            .await
            .expect("vote");
    }
    for p in [&p1, &p3] {
        b.apply(id, p, Command::Vote { question: dup })
            .await
            .expect("vote");
    }
    let ack = b
        .apply(
            id,
            &actor(Role::Moderator),
            Command::Merge {
                question: dup,
                into: target,
            },
        )
        .await
        .expect("merge");
    let Reply::Question(merged) = ack.reply else {
        panic!("merge replies with the question");
    };
    assert_eq!(merged.status, QuestionStatus::Merged);
    let view = a.view(id, Role::Patient, p3.id).await.expect("view");
    let by_id = |q| view.questions.iter().find(|x| x.id == q).expect("question");
    assert_eq!(by_id(target).votes, 3);
    assert_eq!(by_id(dup).votes, 0);
    assert_eq!(
        view.my_votes,
        vec![target],
        "p3's vote moved with the merge"
    );
    // A vote on the merged question is refused; taking it back there is a no-op conflict.
    let refused = a.apply(id, &p3, Command::Vote { question: dup }).await;
    assert!(matches!(
        refused,
        Err(BrokerError::Refused(Refusal::Conflict(_)))
    ));
}

#[tokio::test]
async fn subscribe_delivers_every_event_stored_after_it_returns() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis).await;
    let patient = actor(Role::Patient);
    for _ in 0..15 {
        // A fresh session each time: the reader on `b` must pick up a new stream at once.
        let id = live_session(&a, Moderation::Post).await;
        let mut rx = b.subscribe(id).await.expect("subscribe");
        let q = ask(&a, id, &patient, "Is this lump worth a biopsy?").await;
        let event = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("the event arrives")
            .expect("open");
        assert_eq!(frame(&event)["question"]["id"], q);
    }
}

#[tokio::test]
async fn replay_resumes_on_another_node_and_knows_what_history_lost() {
    let redis = TestRedis::start();
    let prefix = unique_prefix();
    let small = RedisConfig {
        history: 5,
        ..config(&redis, &prefix)
    };
    let a = broker(small.clone()).await;
    let b = broker(small).await;
    let id = live_session(&a, Moderation::Post).await;
    let patient = actor(Role::Patient);
    for i in 0..300 {
        ask(&a, id, &patient, &format!("q{i}")).await;
    }
    // Post-moderated: every ask is logged twice (the public view and the staff one).
    let Replay::Events { head, .. } = b.replay(id, 598).await.expect("replay") else {
        panic!("the last events are kept");
    };
    assert_eq!(head, 601);
    let Replay::Events { events, .. } = b.replay(id, head - 3).await.expect("replay") else {
        panic!("the last events are kept");
    };
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![599, 600, 601]
    );
    assert!(matches!(
        b.replay(id, 1).await.expect("replay"),
        Replay::TooOld
    ));
    assert!(matches!(
        b.replay(id, head + 1).await.expect("replay"),
        Replay::TooOld
    ));
    assert!(matches!(
        b.replay(id, head).await.expect("replay"),
        Replay::Events { events, .. } if events.is_empty()
    ));
    assert!(matches!(
        b.replay(Uuid::now_v7(), 0).await,
        Err(BrokerError::NoSession)
    ));
}

#[tokio::test]
async fn viewers_add_up_over_nodes_and_a_silent_node_stops_counting() {
    let redis = TestRedis::start();
    let prefix = unique_prefix();
    let short = RedisConfig {
        presence_ttl: Duration::from_secs(1),
        ..config(&redis, &prefix)
    };
    let broker = broker(short).await;
    let id = live_session(&broker, Moderation::Pre).await;
    let (n1, n2) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(broker.report_viewers(id, n1, 3).await.expect("report"), 3);
    assert_eq!(broker.report_viewers(id, n2, 4).await.expect("report"), 7);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        broker.report_viewers(id, n1, 3).await.expect("report"),
        3,
        "n2 went silent"
    );
    assert_eq!(
        broker.report_viewers(id, n1, 0).await.expect("report"),
        0,
        "n1 left"
    );
}

#[tokio::test]
async fn the_retention_keeps_public_answers_and_delete_leaves_no_key() {
    let redis = TestRedis::start();
    let prefix = unique_prefix();
    let broker = broker(config(&redis, &prefix)).await;
    let id = live_session(&broker, Moderation::Post).await;
    let p = actor(Role::Patient);
    broker
        .record_consent(id, p.id, time::OffsetDateTime::now_utc())
        .await
        .expect("consent");
    let public = ask(&broker, id, &p, "How long is chemotherapy?").await;
    // Held for review: it holds a phone number.
    let held = ask(&broker, id, &p, "call me on 13812345678").await;
    broker
        .apply(id, &p, Command::Vote { question: public })
        .await
        .expect("vote");
    let kept = live_session(&broker, Moderation::Post).await;
    assert!(
        broker.scrub(id).await.is_err(),
        "a live session is not scrubbed"
    );
    broker
        .apply(
            id,
            &actor(Role::Expert),
            Command::SetState {
                state: SessionState::Ended,
            },
        )
        .await
        .expect("end");
    broker.scrub(id).await.expect("scrub");
    let view = broker
        .view(id, Role::Admin, Uuid::now_v7())
        .await
        .expect("view");
    let ids: Vec<_> = view.questions.iter().map(|q| q.id).collect();
    assert_eq!(ids, vec![public], "{held} should be gone");
    assert_eq!(view.questions[0].author_id, None);
    assert_eq!(view.questions[0].author, None);
    assert_eq!(view.questions[0].votes, 1, "the count stays");
    assert!(view.session.scrubbed_at.is_some());
    assert_eq!(broker.consent(id, p.id).await.expect("read"), None);
    assert!(matches!(
        broker.replay(id, 1).await.expect("replay"),
        Replay::TooOld
    ));
    let held_voters = format!("{prefix}:{{{id}}}:voters:{held}");
    assert!(
        !session_keys(&redis, &prefix, id)
            .await
            .contains(&held_voters),
        "the removed question's voters go too"
    );

    broker.delete_session(id).await.expect("delete");
    assert!(broker.session(id).await.expect("read").is_none());
    let listed: Vec<_> = broker
        .sessions()
        .await
        .expect("list")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![kept]);
    let left = session_keys(&redis, &prefix, id).await;
    assert!(left.is_empty(), "keys left after delete: {left:?}");
}

/// Every key of session `id`, asking every master on a cluster (they all live on one).
async fn session_keys(redis: &TestRedis, prefix: &str, id: SessionId) -> Vec<String> {
    let mut keys = Vec::new();
    for url in redis.server_urls() {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:{{{id}}}:*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        keys.extend(found);
    }
    keys
}

#[tokio::test]
async fn redis_down_means_unavailable_and_the_reader_recovers_by_itself() {
    let mut redis = TestRedis::start();
    if !redis.is_private() {
        eprintln!("skipped: REDIS_URL is set, the test cannot stop that server");
        return;
    }
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Post).await;
    let patient = actor(Role::Patient);
    let mut rx = b.subscribe(id).await.expect("subscribe");
    ask(&a, id, &patient, "before").await;
    let first = events_until(&mut rx, 1, 3).await;
    assert_eq!(first.len(), 2, "the public and the staff view");

    redis.stop();
    // Fails (within the command timeout) instead of hanging; the bound is generous on purpose.
    let down = tokio::time::timeout(
        Duration::from_secs(15),
        a.apply(
            id,
            &patient,
            Command::Ask {
                text: "during".into(),
            },
        ),
    )
    .await
    .expect("a write with Redis down fails instead of hanging");
    assert!(
        matches!(down, Err(BrokerError::Unavailable(_))),
        "{:?}",
        down.err()
    );
    assert!(matches!(a.ping().await, Err(BrokerError::Unavailable(_))));
    tokio::time::sleep(Duration::from_secs(2)).await;

    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seq = loop {
        match a
            .apply(
                id,
                &patient,
                Command::Ask {
                    text: "after".into(),
                },
            )
            .await
        {
            Ok(ack) => break ack.seq,
            Err(BrokerError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("not recovered: {e}"),
        }
    };
    assert_eq!(seq, 5, "the refused ask stored nothing");
    let after = events_until(&mut rx, 3, 5).await;
    assert_eq!(frame(&after[0])["question"]["text"], "after");
}

#[tokio::test]
async fn acknowledged_questions_survive_a_redis_restart_with_aof() {
    let mut redis = TestRedis::start();
    if !redis.is_private() {
        eprintln!("skipped: REDIS_URL is set, the test cannot restart that server");
        return;
    }
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Pre).await;
    let asks = (0..50).map(|i| {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let patient = actor(Role::Patient);
            ask(&node, id, &patient, &format!("survivor {i}")).await
        }
    });
    let acked: HashSet<u64> = join_all(asks).await.into_iter().collect();
    redis.stop();
    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        match b.view(id, Role::Moderator, Uuid::now_v7()).await {
            Ok(view) => break view,
            Err(BrokerError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let stored: HashSet<u64> = view.questions.iter().map(|q| q.id).collect();
    assert_eq!(stored, acked);
    assert_eq!(view.seq, 51);
    let Replay::Events { events, .. } = a.replay(id, 0).await.expect("replay") else {
        panic!("history kept");
    };
    assert_eq!(events.len(), 51);
}

#[tokio::test]
async fn long_unicode_edits_are_stored() {
    let redis = TestRedis::start();
    let (a, _b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Post).await;
    let q = ask(&a, id, &actor(Role::Patient), "first").await;
    let text = "长".repeat(480);
    for i in 0..20 {
        let ack = tokio::time::timeout(
            Duration::from_secs(5),
            a.apply(
                id,
                &actor(Role::Moderator),
                Command::Edit {
                    question: q,
                    text: format!("{text}{i}"),
                },
            ),
        )
        .await
        .expect("edit in time")
        .expect("edit");
        // Post-moderated: each change is logged for the public and for staff.
        assert_eq!(ack.seq, 5 + 2 * i);
    }
}

#[tokio::test]
async fn commands_batched_on_one_node_are_each_applied_once_and_acked_with_their_own_seq() {
    let redis = TestRedis::start();
    let (a, _b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Pre).await;
    let q = ask(&a, id, &actor(Role::Patient), "pending").await;
    let moderators: Vec<Actor> = (0..10).map(|_| actor(Role::Moderator)).collect();
    let patients: Vec<Actor> = (0..20).map(|_| actor(Role::Patient)).collect();
    let approvals = moderators.iter().map(|m| {
        a.apply(
            id,
            m,
            Command::Approve {
                question: q,
                text: None,
                original: false,
            },
        )
    });
    let asks = patients.iter().enumerate().map(|(i, p)| {
        a.apply(
            id,
            p,
            Command::Ask {
                text: format!("batched {i}"),
            },
        )
    });
    let (approvals, asks) = tokio::join!(join_all(approvals), join_all(asks));
    assert_eq!(
        approvals.iter().filter(|r| r.is_ok()).count(),
        1,
        "approved once"
    );
    for refused in approvals.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(refused, BrokerError::Refused(Refusal::Conflict(_))),
            "{refused}"
        );
    }
    let Replay::Events { events, .. } = a.replay(id, 0).await.expect("replay") else {
        panic!("history kept");
    };
    let mut seqs = HashSet::new();
    for ack in asks {
        let ack = ack.expect("ask");
        let Reply::Question(question) = ack.reply else {
            panic!("ask replies with the question");
        };
        let event = events
            .iter()
            .find(|e| e.seq == ack.seq)
            .expect("the acked event");
        assert_eq!(
            frame(event)["question"]["id"],
            question.id,
            "ack seq is the ask's own event"
        );
        assert!(seqs.insert(ack.seq));
    }
    assert_eq!(
        events.len(),
        1 + 1 + 2 + 20,
        "live, ask, one approval (public and staff views), 20 asks"
    );
}

/// Asks `n` questions from `n` patients at once (the committer batches them).
async fn ask_many(broker: &RedisBroker, id: SessionId, n: usize) -> Vec<u64> {
    let patients: Vec<Actor> = (0..n).map(|_| actor(Role::Patient)).collect();
    let asks = patients.iter().enumerate().map(|(i, p)| {
        broker.apply(
            id,
            p,
            Command::Ask {
                text: format!("question {i}: how often should I be screened after treatment?"),
            },
        )
    });
    join_all(asks)
        .await
        .into_iter()
        .map(|r| match r.expect("ask").reply {
            Reply::Question(q) => q.id,
            other => panic!("unexpected reply {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_command_on_a_big_session_reads_only_what_changed() {
    let redis = TestRedis::start();
    if !redis.is_private() {
        return; // commandstats count every client of a shared server
    }
    let (a, _b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Pre).await;
    let ids = ask_many(&a, id, 3000).await;
    let moderator = actor(Role::Moderator);
    let calls = |c: &str| redis.command_calls(c).expect("commandstats");
    let (hgetall, hget) = (calls("hgetall"), calls("hget"));
    for &q in &ids[..50] {
        a.apply(
            id,
            &moderator,
            Command::Approve {
                question: q,
                text: None,
                original: false,
            },
        )
        .await
        .expect("approve");
    }
    // A full read is one HGETALL of 3,000 records; a refresh reads the records changed since
    // (one HGET each: here the one the previous approval wrote).
    assert_eq!(calls("hgetall"), hgetall, "no command read every record");
    assert!(
        calls("hget") - hget <= 50 * 4,
        "{} HGETs for 50 approvals",
        calls("hget") - hget
    );
    let view = a
        .view(id, Role::Moderator, moderator.id)
        .await
        .expect("view");
    assert_eq!(view.questions.len(), 3000);
    let approved = view
        .questions
        .iter()
        .filter(|q| q.status == QuestionStatus::Approved)
        .count();
    assert_eq!(approved, 50);
}

#[tokio::test]
async fn a_node_s_cached_session_sees_what_other_nodes_changed() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis).await;
    let id = live_session(&a, Moderation::Pre).await;
    let ids = ask_many(&a, id, 20).await;
    let (m_a, m_b) = (actor(Role::Moderator), actor(Role::Moderator));
    let approve = |question| Command::Approve {
        question,
        text: None,
        original: false,
    };
    // Both nodes now hold the session in their cache.
    a.apply(id, &m_a, approve(ids[0]))
        .await
        .expect("a approves");
    b.apply(id, &m_b, approve(ids[1]))
        .await
        .expect("b approves");
    // b edits a question a has cached as it was, and a new question arrives through b.
    b.apply(
        id,
        &m_b,
        Command::Edit {
            question: ids[2],
            text: "edited on b".into(),
        },
    )
    .await
    .expect("b edits");
    let asked_on_b = ask(&b, id, &actor(Role::Patient), "asked on b").await;
    // a refuses what b already did, and sees b's edit and b's question.
    let again = a.apply(id, &m_a, approve(ids[1])).await;
    assert!(
        matches!(again, Err(BrokerError::Refused(Refusal::Conflict(_)))),
        "{again:?}"
    );
    let ack = a.apply(id, &m_a, approve(ids[2])).await.expect("approve");
    let Reply::Question(q) = ack.reply else {
        panic!("approve replies with the question");
    };
    assert_eq!(q.text, "edited on b");
    let ack = a
        .apply(id, &m_a, approve(asked_on_b))
        .await
        .expect("approve b's question");
    let Reply::Question(q) = ack.reply else {
        panic!("approve replies with the question");
    };
    assert_eq!(q.text, "asked on b");
    // A vote cast meanwhile is counted in the next event about the question.
    let patient = actor(Role::Patient);
    b.apply(id, &patient, Command::Vote { question: ids[0] })
        .await
        .expect("vote");
    let ack = a
        .apply(
            id,
            &m_a,
            Command::Pin {
                question: ids[0],
                pinned: true,
            },
        )
        .await
        .expect("pin");
    let Reply::Question(q) = ack.reply else {
        panic!("pin replies with the question");
    };
    assert_eq!(q.votes, 1, "the cached count was read again");
    // Both nodes see one state, and it is the full read's.
    let on_a = a.view(id, Role::Moderator, m_a.id).await.expect("view a");
    let on_b = b.view(id, Role::Moderator, m_b.id).await.expect("view b");
    assert_eq!(on_a.questions, on_b.questions);
    assert_eq!(on_a.questions.len(), 21);
    // The next question id is right on a although b asked last.
    let next = ask(&a, id, &actor(Role::Patient), "asked on a").await;
    assert_eq!(next, 22);
}
