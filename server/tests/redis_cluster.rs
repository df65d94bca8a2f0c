//! What only a Redis Cluster has: sessions spread over several masters, a `/readyz` that must
//! look at every one of them, and a cluster node mistaken for a single Redis. Each test starts
//! its own three-master cluster (`RedisCluster::start`); the other Redis suites run on one too
//! with `ONCOLIVE_TEST_BROKER=redis-cluster`.

use std::sync::Arc;
use std::time::Duration;

use oncolive_server::broker::{Broker, BrokerError, RedisBroker, RedisConfig};
use oncolive_server::domain::{Actor, Command, Reply};
use oncolive_server::model::{Moderation, NewSession, Role, SessionId, SessionState};
use oncolive_testkit::redis::{RedisCluster, unique_prefix};
use time::OffsetDateTime;
use uuid::Uuid;

async fn broker(url: &str, prefix: &str) -> Arc<RedisBroker> {
    let config = RedisConfig {
        url: url.to_owned(),
        prefix: prefix.to_owned(),
        ..RedisConfig::default()
    };
    Arc::new(RedisBroker::connect(config).await.expect("broker connects"))
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

async fn live_session(broker: &RedisBroker) -> SessionId {
    let now = OffsetDateTime::now_utc();
    let session = NewSession {
        title: "Lung cancer screening".into(),
        topic: String::new(),
        expert_name: "Dr. Wang".into(),
        scheduled_start: now,
        moderation: Moderation::Post,
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

/// How many keys under `prefix` each master holds.
async fn keys_per_master(cluster: &RedisCluster, prefix: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for port in cluster.ports() {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        counts.push(keys.len());
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_master_and_each_works_whole() {
    let cluster = RedisCluster::start(3);
    let prefix = unique_prefix();
    let (a, b) = (
        broker(&cluster.url, &prefix).await,
        broker(&cluster.url, &prefix).await,
    );
    // Sessions land on random slots: twelve of them leave a master empty in about 2 % of runs,
    // so more are made until every master holds one (64 leave one empty once in ~10^11).
    let mut ids = Vec::new();
    let mut spread = Vec::new();
    while ids.len() < 64 {
        ids.push(live_session(&a).await);
        if ids.len() >= 12 {
            spread = keys_per_master(&cluster, &prefix).await;
            if spread.iter().all(|&n| n > 0) {
                break;
            }
        }
    }
    assert!(spread.iter().all(|&n| n > 0), "keys per master: {spread:?}");

    let patient = actor(Role::Patient);
    for &id in &ids {
        // Node B follows the session (its own reader, on the session's master) while A writes.
        let mut rx = b.subscribe(id).await.expect("subscribe");
        let ack = a
            .apply(
                id,
                &patient,
                Command::Ask {
                    text: "Is screening painful?".into(),
                },
            )
            .await
            .expect("ask");
        let Reply::Question(question) = ack.reply else {
            panic!("unexpected reply {:?}", ack.reply);
        };
        // A vote and its flush: scripts that name the voters set from inside Lua.
        b.apply(
            id,
            &actor(Role::Patient),
            Command::Vote {
                question: question.id,
            },
        )
        .await
        .expect("vote");
        b.flush_votes(id).await.expect("flush");
        let mut seqs = Vec::new();
        while seqs.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an event within 5 s")
                .expect("receiver open");
            seqs.push(event.seq);
        }
        // The question's public and staff views, then the votes.
        assert_eq!(
            seqs,
            [ack.seq - 1, ack.seq],
            "the question's two views, then the votes"
        );
        let votes = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the votes within 5 s")
            .expect("receiver open");
        assert_eq!(votes.seq, ack.seq + 1);
        let view = a.view(id, Role::Moderator, patient.id).await.expect("view");
        assert_eq!(view.questions.len(), 1);
        assert_eq!(view.questions[0].votes, 1);
    }
    let mut listed: Vec<SessionId> = a
        .sessions()
        .await
        .expect("list")
        .iter()
        .map(|s| s.id)
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "the listing reads sessions from every master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ok_only_while_every_slot_is_served() {
    let mut cluster = RedisCluster::start(3);
    let prefix = unique_prefix();
    let node = broker(&cluster.url, &prefix).await;
    node.ping().await.expect("a cluster that is up is ready");

    // A new user's first try: one node's address as if it were a single Redis.
    let first_port = cluster.ports()[0];
    let mistaken = broker(&format!("redis://127.0.0.1:{first_port}"), &prefix).await;
    let Err(BrokerError::Unavailable(cause)) = mistaken.ping().await else {
        panic!("a cluster node named as a single Redis is not ready");
    };
    assert!(cause.to_string().contains("redis+cluster://"), "{cause}");

    cluster.kill_master(1);
    assert!(
        matches!(node.ping().await, Err(BrokerError::Unavailable(_))),
        "a third of the slots is unserved"
    );
    cluster.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while let Err(e) = node.ping().await {
        assert!(std::time::Instant::now() < deadline, "not ready again: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = live_session(&node).await;
    assert!(node.session(id).await.expect("read").is_some());
}
