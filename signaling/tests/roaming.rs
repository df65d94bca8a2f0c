//! A viewer whose address changes mid-stream (a phone moving from Wi-Fi to mobile data)
//! restarts ICE with a WHEP `PATCH` and keeps its session. The relay and the publisher live in
//! one network namespace and the viewer in another, linked by two veth pairs the test makes
//! ("wifi" and "mobile"); while media flows, the viewer's Wi-Fi address goes away and its
//! mobile link comes up. The test makes its own namespaces (root needed), so it leaves the one
//! it runs in untouched.
//!
//! The mobile link's address exists, link down, from the start, as a phone's mobile data
//! interface does: `webrtc` 0.14 lists a peer connection's interfaces once, when it is built,
//! so the test viewer could not gather on an interface that appears later (browsers list them
//! again on an ICE restart).
//!
//! The addresses are from TEST-NET-1 and TEST-NET-2 (RFC 5737): they exist only on this test's
//! veth pairs.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::*;
use oncolive_signaling::RelayConfig;
use oncolive_testkit::netns::NetNamespace;

const RELAY_IP: &str = "192.0.2.1";
const VIEWER_BEFORE: &str = "192.0.2.2";
const RELAY_MOBILE_IP: &str = "198.51.100.1";
const VIEWER_AFTER: &str = "198.51.100.2";

#[test]
fn a_viewer_that_changes_address_restarts_ice_and_keeps_its_session() -> Result<()> {
    let relay_ns = NetNamespace::new("relay")?;
    let viewer_ns = Arc::new(NetNamespace::new("viewer")?);
    // Traffic to one's own address goes through lo, even on a veth's address.
    relay_ns.ip(&["link", "set", "lo", "up"])?;
    relay_ns.veth_to("wifi-r", &viewer_ns, "wifi-v")?;
    relay_ns.veth_to("mobile-r", &viewer_ns, "mobile-v")?;
    relay_ns.ip(&["addr", "add", &format!("{RELAY_IP}/24"), "dev", "wifi-r"])?;
    relay_ns.ip(&[
        "addr",
        "add",
        &format!("{RELAY_MOBILE_IP}/24"),
        "dev",
        "mobile-r",
    ])?;
    viewer_ns.ip(&[
        "addr",
        "add",
        &format!("{VIEWER_BEFORE}/24"),
        "dev",
        "wifi-v",
    ])?;
    viewer_ns.ip(&[
        "addr",
        "add",
        &format!("{VIEWER_AFTER}/24"),
        "dev",
        "mobile-v",
    ])?;
    viewer_ns.ip(&["link", "set", "mobile-v", "down"])?;
    // The relay's HTTP edge (on RELAY_IP) is reached through whichever network is up.
    viewer_ns.ip(&["route", "add", "default", "via", RELAY_IP])?;
    let outcome = relay_ns.block_on(roam(viewer_ns.clone()))?;
    drop(viewer_ns);
    outcome
}

async fn roam(viewer_ns: Arc<NetNamespace>) -> Result<()> {
    let relay_ip: IpAddr = RELAY_IP.parse()?;
    let t = spawn_relay_at(
        RelayConfig {
            interfaces: vec!["wifi-r".into(), "mobile-r".into()],
            ..RelayConfig::default()
        },
        relay_ip,
    )
    .await?;
    let session = "s-roam";
    let publisher = Arc::new(t.publish(session, VideoCodec::Vp8).await?);
    publisher.wait_connected().await?;

    // The viewer's every socket (HTTP, ICE) is opened in its own namespace.
    let base = t.base.clone();
    let mut viewer = viewer_ns
        .run(async move {
            // The crate's ICE timeouts, as a browser has (disconnected after 5 s).
            // No kept-alive connections: a browser drops them when its network changes, and
            // one bound to the old address would only time out.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()?;
            let media = MediaClient::new(&base, http, IceTimeouts::Default)?;
            let viewer = media
                .viewer(session, &fresh_viewer_token(session))
                .connect()
                .await?;
            viewer.wait_connected().await?;
            anyhow::Ok(viewer)
        })
        .await??;
    let offer = viewer.pc.local_description().await.context("offer")?.sdp;
    ensure!(
        offer.contains(VIEWER_BEFORE),
        "the viewer does not offer its namespace's address: {offer}"
    );
    let resource = viewer.resource_url();
    let first = warm_up(&publisher, &mut [&mut viewer], 0).await?;

    // The publisher goes on sending, a frame and an audio packet every 20 ms.
    let next_marker = Arc::new(AtomicU32::new(first));
    let sending = Arc::new(AtomicBool::new(true));
    let sender = tokio::spawn({
        let (publisher, next_marker, sending) =
            (publisher.clone(), next_marker.clone(), sending.clone());
        async move {
            while sending.load(Ordering::Relaxed) {
                let marker = next_marker.fetch_add(1, Ordering::Relaxed);
                publisher.send(marker).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(())
        }
    });
    let mut video = Vec::new();
    let before = receive_video(&mut viewer, &mut video, |r| r.marker >= first + 25).await;
    ensure!(before, "no video before the move: {video:?}");

    // The phone changes networks: Wi-Fi and its address are gone, mobile data comes up.
    let keyframes_before = publisher.keyframe_requests();
    viewer_ns.ip(&[
        "addr",
        "del",
        &format!("{VIEWER_BEFORE}/24"),
        "dev",
        "wifi-v",
    ])?;
    viewer_ns.ip(&["link", "set", "wifi-v", "down"])?;
    viewer_ns.ip(&["link", "set", "mobile-v", "up"])?;
    viewer_ns.ip(&["route", "add", "default", "via", RELAY_MOBILE_IP])?;
    let moved_at = Instant::now();
    let moved_marker = next_marker.load(Ordering::Relaxed);

    let (viewer_back, restart) = viewer_ns
        .run(async move {
            let restart = viewer.restart_ice().await;
            (viewer, restart)
        })
        .await?;
    let mut viewer = viewer_back;
    let restart = restart?;
    ensure!(
        restart.offered.contains(VIEWER_AFTER) && !restart.offered.contains(VIEWER_BEFORE),
        "the restart offers the old address: {}",
        restart.offered
    );
    ensure!(
        restart.answered.contains(RELAY_MOBILE_IP),
        "{}",
        restart.answered
    );
    ensure!(
        viewer.resource_url() == resource,
        "the viewer's resource changed"
    );

    let back = receive_video(&mut viewer, &mut video, |r| r.marker > moved_marker).await;
    let picture_back = moved_at.elapsed();
    ensure!(back, "no video after the ICE restart");
    let more = receive_video(&mut viewer, &mut video, |r| r.marker > moved_marker + 50).await;
    sending.store(false, Ordering::Relaxed);
    sender.await??;
    ensure!(more, "video stopped again after the ICE restart");
    println!(
        "ICE restart: PATCH answered in {:?}; first video packet {:?} after the address changed",
        restart.answered_in, picture_back
    );

    // One stream: in marker order, sequence numbers go on where they were, with only the
    // packets sent to the old address missing (some may come late, resent on a NACK).
    let arrived = video.len();
    let late = video
        .iter()
        .scan(0, |newest, r| {
            let late = r.marker < *newest;
            *newest = (*newest).max(r.marker);
            Some(late)
        })
        .filter(|late| *late)
        .count();
    video.sort_by_key(|r| r.marker);
    video.dedup_by_key(|r| r.marker);
    for pair in video.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let step = b.seq.wrapping_sub(a.seq);
        ensure!(
            step == (b.marker - a.marker) as u16,
            "video jumps from marker {} seq {} to marker {} seq {}",
            a.marker,
            a.seq,
            b.marker,
            b.seq
        );
    }
    let received_after = video.iter().filter(|r| r.marker > moved_marker).count();
    let missing =
        (video.last().map_or(0, |r| r.marker) - video[0].marker + 1) as usize - video.len();
    println!(
        "video after the move: {received_after} packets; missing overall: {missing}; \
         late (resent on a NACK): {late}; repeats: {}",
        arrived - video.len()
    );

    // The relay asked for a keyframe for the viewer whose picture broke off.
    for _ in 0..(PATIENCE.as_millis() / 20) {
        if publisher.keyframe_requests() > keyframes_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(
        publisher.keyframe_requests() > keyframes_before,
        "no keyframe request after the ICE restart"
    );

    // Still the same WHEP resource: it is there to DELETE, once.
    let status = t
        .http
        .delete(&resource)
        .bearer_auth(viewer.token())
        .send()
        .await?
        .status();
    ensure!(status.is_success(), "DELETE after the restart: {status}");
    let status = t
        .http
        .delete(&resource)
        .bearer_auth(viewer.token())
        .send()
        .await?
        .status();
    ensure!(
        status == reqwest::StatusCode::NOT_FOUND,
        "second DELETE: {status}"
    );
    Ok(())
}

/// Takes the viewer's video packets into `video` until one satisfies `done` (`true`) or
/// [`PATIENCE`] runs out (`false`).
async fn receive_video(
    viewer: &mut Viewer,
    video: &mut Vec<Received>,
    done: impl Fn(&Received) -> bool,
) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let Some(packet) = viewer.next_video(deadline - Instant::now()).await else {
            return false;
        };
        let finished = done(&packet);
        video.push(packet);
        if finished {
            return true;
        }
    }
    false
}
