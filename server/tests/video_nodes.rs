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
use oncolive_testkit::media::{
    IceTimeouts, MediaClient, RTCPeerConnectionState, Received, collect_until, send_batch, warm_up,
};
use oncolive_testkit::netns::NetNamespace;
use oncolive_testkit::node::Node;
use oncolive_testkit::redis::{RedisServer, TestRedis, unique_prefix};

/// One test at a time: the namespaced one adds interfaces to this namespace, and a peer of
/// another test gathering candidates on them would lose them when they go.
static NETWORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn nodes(redis: &TestRedis, n: usize) -> Vec<Node> {
    Node::on_redis(env!("CARGO_BIN_EXE_oncolive"), redis, n)
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
    let _one_at_a_time = NETWORK.lock().await;
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

/// Video packets in the order received, with nothing before `from`: markers never go back and
/// sequence numbers step by one within a stretch of markers that all arrived.
fn check_in_order(got: &[Received], what: &str) -> anyhow::Result<()> {
    let video: Vec<&Received> = got.iter().filter(|r| r.kind.is_video()).collect();
    ensure!(!video.is_empty(), "{what}: no video");
    for pair in video.windows(2) {
        ensure!(
            pair[1].marker > pair[0].marker,
            "{what}: marker {} after {}",
            pair[1].marker,
            pair[0].marker
        );
        ensure!(
            pair[1].seq == pair[0].seq.wrapping_add(1),
            "{what}: sequence {} after {}",
            pair[1].seq,
            pair[0].seq
        );
    }
    Ok(())
}

/// Origin–edge on three nodes of one Redis: the expert publishes to A; viewers of B and C get
/// the stream through one pull each from A. A is killed and the expert republishes to B: the
/// viewer of C recovers without a new WHEP session, its sequence numbers continuing.
#[tokio::test(flavor = "multi_thread")]
async fn viewers_on_other_nodes_get_the_stream_through_one_pull_and_follow_a_new_origin()
-> anyhow::Result<()> {
    let _one_at_a_time = NETWORK.lock().await;
    let redis = TestRedis::start();
    let mut nodes = nodes(&redis, 3);
    one_pull_per_edge_then_a_new_origin(&mut nodes).await
}

/// The same with each node in a network namespace of its own, joined to this test's namespace
/// by a veth pair (its own address; this namespace routes between them and holds Redis), as
/// three hosts on one network would be.
#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_in_three_network_namespaces() -> anyhow::Result<()> {
    let _one_at_a_time = NETWORK.lock().await;
    // What this namespace has (netlink answers for the caller's namespace; /sys may not).
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()?;
    let interfaces: Vec<String> = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter_map(|l| Some(l.split(':').nth(1)?.trim().split('@').next()?.to_owned()))
        .filter(|name| name != "lo")
        .collect();
    if !interfaces.is_empty() {
        // Routing is turned on below: never in a namespace this test did not make for itself.
        eprintln!(
            "skipped: run inside a loopback-only namespace (unshare -n), not beside {interfaces:?}"
        );
        return Ok(());
    }
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .context("turning on routing in the test's namespace (needs root)")?;
    let redis = RedisServer::private(&["--bind", "0.0.0.0", "--protected-mode", "no"]);
    let prefix = unique_prefix();
    let links = [
        ("va", "192.0.2.1", "192.0.2.2"),
        ("vb", "198.51.100.1", "198.51.100.2"),
        ("vc", "203.0.113.1", "203.0.113.2"),
    ];
    let url = format!("redis://{}:{}", links[0].1, redis.port());
    let mut spaces = Vec::new();
    // Dropped after the nodes: the links go before the next test starts its nodes here.
    let mut made = Veths(Vec::new());
    let mut nodes = Vec::new();
    for (name, here, there) in links {
        let ns = NetNamespace::new(&format!("node-{name}"))?;
        made.0.push(name);
        ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.path(),
        ])?;
        ip(&["addr", "add", &format!("{here}/30"), "dev", name])?;
        ip(&["link", "set", name, "up"])?;
        ns.ip(&["addr", "add", &format!("{there}/30"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["route", "add", "default", "via", here])?;
        nodes.push(Node::start_in(
            Some(&ns),
            &format!("{there}:0"),
            env!("CARGO_BIN_EXE_oncolive"),
            Some((&url, &prefix)),
            &[],
        )?);
        spaces.push(ns);
    }
    let result = one_pull_per_edge_then_a_new_origin(&mut nodes).await;
    drop(nodes);
    drop(made);
    result
}

/// The veth pairs a test made here, deleted when it ends (a node of the next test must find
/// only loopback, or it refuses loopback candidates).
struct Veths(Vec<&'static str>);

impl Drop for Veths {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = ip(&["link", "del", name]);
        }
    }
}

/// `ip ARGS…` in this test's namespace.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn one_pull_per_edge_then_a_new_origin(nodes: &mut [Node]) -> anyhow::Result<()> {
    let session = nodes[0].api.live_session(Moderation::Post).await?;
    let id = session.id;
    let client =
        |node: &Node| MediaClient::new(&node.api.url, node.api.http.clone(), IceTimeouts::Short);

    let publisher = client(&nodes[0])?
        .publisher(id, &session.expert)
        .connect()
        .await?;
    publisher.wait_connected().await?;
    let mut marker = 0u32;
    for _ in 0..10 {
        publisher.send(marker).await?;
        marker += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    every_node_says(nodes, id, VideoState::Live).await?;

    // One viewer on each edge (two on B: still one pull from A).
    let mut on_b = Vec::new();
    for _ in 0..2 {
        let token = nodes[1].api.patient(id).await?;
        let viewer = client(&nodes[1])?.viewer(id, &token).connect().await?;
        viewer.wait_connected().await?;
        on_b.push(viewer);
    }
    let token = nodes[2].api.patient(id).await?;
    let mut on_c = client(&nodes[2])?.viewer(id, &token).connect().await?;
    on_c.wait_connected().await?;
    let c_resource = on_c.resource_url();
    // A viewer of the origin itself, bound after the edges' pulls (whose header extensions are
    // numbered as the relay numbers them, not as this viewer does).
    let token = nodes[0].api.patient(id).await?;
    let mut on_a = client(&nodes[0])?.viewer(id, &token).connect().await?;
    on_a.wait_connected().await?;
    {
        let (b0, b1) = on_b.split_at_mut(1);
        marker = warm_up(
            &publisher,
            &mut [&mut b0[0], &mut b1[0], &mut on_c, &mut on_a],
            marker,
        )
        .await?;
    }
    let from = marker;
    send_batch(&publisher, from, from + 100).await?;
    let got_a = collect_until(&mut on_a, from + 99).await;
    check_in_order(&got_a, "viewer on A")?;
    ensure!(
        got_a.iter().any(|r| r.marker == from + 99),
        "the viewer on A missed the end"
    );
    for (i, viewer) in on_b.iter_mut().enumerate() {
        let got = collect_until(viewer, from + 99).await;
        check_in_order(&got, &format!("viewer {i} on B"))?;
        ensure!(
            got.iter().any(|r| r.marker == from + 99),
            "viewer {i} on B missed the end"
        );
    }
    let got_c = collect_until(&mut on_c, from + 99).await;
    check_in_order(&got_c, "viewer on C")?;
    let last_seq = got_c
        .iter()
        .filter(|r| r.kind.is_video())
        .map(|r| r.seq)
        .next_back()
        .context("C got video")?;
    // The origin serves its own viewer and one per edge: B's two viewers are one pull.
    ensure!(
        viewers_on(&nodes[0]).await? == 3.0,
        "the origin serves {} viewers, not one per edge",
        viewers_on(&nodes[0]).await?
    );

    // The origin dies; the expert republishes to B.
    nodes[0].kill();
    drop((publisher, on_a));
    let publisher = client(&nodes[1])?
        .publisher(id, &session.expert)
        .connect()
        .await?;
    publisher.wait_connected().await?;
    let live_nodes = &nodes[1..];
    every_node_says(live_nodes, id, VideoState::Live).await?;
    // C's viewer keeps its WHEP session and gets the new stream, sequence numbers continuing.
    let resumed = 100_000u32;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = None;
    let mut m = resumed;
    while first.is_none() {
        ensure!(
            Instant::now() < deadline,
            "the viewer on C got nothing from the new origin"
        );
        publisher.send(m).await?;
        m += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        first = on_c
            .drain()
            .into_iter()
            .find(|r| r.kind.is_video() && r.marker >= resumed);
    }
    let first = first.context("first packet")?;
    ensure!(on_c.resource_url() == c_resource, "C's viewer renegotiated");
    ensure!(
        first.seq.wrapping_sub(last_seq) < 1000,
        "sequence numbers jumped from {last_seq} to {}",
        first.seq
    );
    send_batch(&publisher, m, m + 50).await?;
    let got = collect_until(&mut on_c, m + 49).await;
    check_in_order(&got, "viewer on C after the move")?;

    // A viewer joining the edge needs a keyframe: the request reaches the expert on B through
    // C's pull (and B's gate).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let asked = publisher.keyframe_requests();
    let token = nodes[2].api.patient(id).await?;
    let joiner = client(&nodes[2])?.viewer(id, &token).connect().await?;
    joiner.wait_connected().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.keyframe_requests() == asked {
        ensure!(
            Instant::now() < deadline,
            "the joiner's keyframe request never reached the expert"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // C's viewers leave: C releases its pull, and B (the origin now) serves only its own two.
    ensure!(
        viewers_on(&nodes[1]).await? == 3.0,
        "B serves its two and C's pull"
    );
    for viewer in [&on_c, &joiner] {
        viewer.delete().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while viewers_on(&nodes[1]).await? != 2.0 {
        ensure!(Instant::now() < deadline, "C's pull was not released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `oncolive_video_viewers` in a node's `/metrics` (WHEP viewers its relay serves).
async fn viewers_on(node: &Node) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{}/metrics", node.api.url))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("oncolive_video_viewers "))
        .context("no oncolive_video_viewers in /metrics")?
        .trim()
        .parse()
        .context("viewers")
}
