//! Point 6 of issue 10: no node-wide lock across a broker call. With a real `redis-server`
//! behind a proxy that stalls, a join to a session whose channel runs on this node completes
//! while another session's subscribe is stuck in Redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oncolive_server::broker::{Broker, RedisBroker, RedisConfig};
use oncolive_server::hub::{Audience, Hub};
use oncolive_server::model::{Moderation, NewSession, SessionId};
use oncolive_testkit::proxy::StallProxy;
use oncolive_testkit::redis::{RedisServer, unique_prefix};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Far longer than the test runs: a stalled command stays pending instead of timing out.
const PATIENT: Duration = Duration::from_secs(120);

async fn session(broker: &RedisBroker) -> SessionId {
    let now = OffsetDateTime::now_utc();
    let session = NewSession {
        title: "Lung cancer".into(),
        topic: String::new(),
        expert_name: "Dr. Chen".into(),
        scheduled_start: now,
        moderation: Moderation::Pre,
        expert_profile: None,
        record: None,
        videos: Vec::new(),
    }
    .into_session(Uuid::now_v7(), now);
    let id = session.id;
    broker
        .create_session(session)
        .await
        .expect("session stored");
    id
}

#[tokio::test]
async fn a_stalled_subscribe_delays_only_its_own_session() {
    let redis = RedisServer::private(&[]);
    let upstream: SocketAddr = redis
        .url
        .trim_start_matches("redis://")
        .parse()
        .expect("redis url is host:port");
    let proxy = StallProxy::start(upstream).await.expect("proxy starts");
    let broker = Arc::new(
        RedisBroker::connect(RedisConfig {
            url: proxy.redis_url(),
            prefix: unique_prefix(),
            command_timeout: PATIENT,
            block: PATIENT,
            ..RedisConfig::default()
        })
        .await
        .expect("broker connects through the proxy"),
    );
    let (running, quiet) = (session(&broker).await, session(&broker).await);
    let cancel = CancellationToken::new();
    let hub = Arc::new(Hub::new(
        broker.clone(),
        64,
        cancel.clone(),
        Arc::new(|_| {}),
    ));
    let first = hub
        .join(running, Audience::Viewer)
        .await
        .expect("first join subscribes");

    proxy.stall();
    let stalled = tokio::spawn({
        let hub = hub.clone();
        async move {
            hub.join(quiet, Audience::Viewer)
                .await
                .map(|m| m.channel.session)
        }
    });
    // The quiet session's subscribe reads its head (HGET) first: once the proxy holds that,
    // its join is inside the broker call.
    proxy.holding(b"HGET").await;
    assert!(
        !stalled.is_finished(),
        "the stalled join cannot have finished"
    );

    let second = tokio::time::timeout(Duration::from_secs(30), hub.join(running, Audience::Viewer))
        .await
        .expect("a join to a running channel does not wait for another session's subscribe")
        .expect("second join");
    assert!(Arc::ptr_eq(&first.channel, &second.channel));
    assert_eq!(second.channel.local_connections(), 2);
    assert!(
        !stalled.is_finished(),
        "the other session's subscribe was still stuck in Redis meanwhile"
    );
    assert!(hub.viewers(running).await.is_some());

    proxy.release();
    let joined = tokio::time::timeout(Duration::from_secs(30), stalled)
        .await
        .expect("the stalled join completes once Redis answers")
        .expect("task")
        .expect("join");
    assert_eq!(joined, quiet);
    cancel.cancel();
}
