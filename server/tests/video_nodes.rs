//! One owner for video state across nodes: two real `oncolive` processes on one Redis. The
//! expert publishes (WHIP) to node A, where no socket is; a patient's socket is on node B. B
//! learns the camera is live from the broker, every node's `GET /api/sessions/{id}` says the
//! same, and when the session is ended through B, node A's pump ends A's video. With
//! `ONCOLIVE_TEST_BROKER=redis-cluster`, on a three-master Redis Cluster instead.
//!
//! Run inside a loopback-only namespace, like every server suite (scripts/test.sh).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use oncolive_server::model::{Moderation, SessionState};
use oncolive_server::protocol::{ServerMsg, VideoState};
use oncolive_testkit::hub::HubClient;
use oncolive_testkit::media::{IceTimeouts, MediaClient, RTCPeerConnectionState};
use oncolive_testkit::node::Node;
use oncolive_testkit::redis::{TestRedis, unique_prefix};

fn nodes(redis: &TestRedis, n: usize) -> Vec<Node> {
    let prefix = unique_prefix();
    (0..n)
        .map(|_| {
            Node::start(
                env!("CARGO_BIN_EXE_oncolive"),
                Some((redis.url(), &prefix)),
                &[],
            )
            .expect("node starts")
        })
        .collect()
}

/// The next `video` message the socket gets.
async fn next_video(ws: &mut HubClient) -> anyhow::Result<VideoState> {
    ws.recv_until(|msg| match msg {
        ServerMsg::Video { state, .. } => Some(*state),
        _ => None,
    })
    .await
}

/// Waits until every node's `GET /api/sessions/{id}` says `want` (bounded).
async fn every_node_says(
    nodes: &[Node],
    id: oncolive_server::model::SessionId,
    want: VideoState,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut said = Vec::new();
        for node in nodes {
            said.push(node.api.session(id).await?.video);
        }
        if said.iter().all(|s| *s == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the nodes say {said:?}, not {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `oncolive_video_rooms` in a node's `/metrics`.
async fn rooms(node: &Node) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{}/metrics", node.api.url))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("oncolive_video_rooms "))
        .context("no oncolive_video_rooms in /metrics")?
        .trim()
        .parse()
        .context("rooms")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_camera_s_state_and_the_end_of_its_video_are_the_same_on_every_node()
-> anyhow::Result<()> {
    let redis = TestRedis::start();
    let nodes = nodes(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let session = a.api.live_session(Moderation::Post).await?;
    let id = session.id;

    let (mut patient, snapshot) = b.api.connect_patient(id).await?;
    ensure!(
        snapshot.video == VideoState::Waiting,
        "{:?}",
        snapshot.video
    );
    every_node_says(&nodes, id, VideoState::Waiting).await?;

    // The expert publishes to A, where no socket of the session is.
    let media = MediaClient::new(&a.api.url, a.api.http.clone(), IceTimeouts::Short)?;
    let publisher = std::sync::Arc::new(media.publisher(id, &session.expert).connect().await?);
    publisher.wait_connected().await?;
    let sending = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            // 20 s at most: the test ends the session long before.
            for marker in 0..1000u32 {
                if publisher.send(marker).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    ensure!(next_video(&mut patient).await? == VideoState::Live);
    every_node_says(&nodes, id, VideoState::Live).await?;
    // A patient who connects to B now is told in the snapshot.
    let (_late, snapshot) = b.api.connect_patient(id).await?;
    ensure!(snapshot.video == VideoState::Live, "{:?}", snapshot.video);

    // Ended through B: A's pump ends A's video (its publisher is closed, its room freed).
    b.api
        .set_state(id, &session.expert, SessionState::Ended)
        .await?;
    let state = publisher
        .wait_state(&[
            RTCPeerConnectionState::Closed,
            RTCPeerConnectionState::Failed,
            RTCPeerConnectionState::Disconnected,
        ])
        .await?;
    println!("the publisher on A: {state}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while rooms(a).await? != 0.0 {
        ensure!(Instant::now() < deadline, "node A still holds a room");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(next_video(&mut patient).await? == VideoState::Waiting);
    every_node_says(&nodes, id, VideoState::Waiting).await?;
    sending.abort();
    Ok(())
}
