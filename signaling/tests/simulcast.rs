//! Simulcast: a publisher sends three layers (about 150 kbit/s, 480 kbit/s and 1.3 Mbit/s, as a
//! browser's 180p, 360p and 720p encodings), and each viewer gets the one its link carries or
//! the one it chose. One viewer sits behind a link throttled to 300 kbit/s by a real `tc tbf`
//! on the relay's side of a veth pair (the viewer has a network namespace of its own); the
//! others are on the relay's host. The addresses are from TEST-NET-1 (RFC 5737).
//!
//! Every payload names its layer and frame (`marker = layer << 24 | frame`), so the test can
//! tell which layer each packet came from and count what the throttled viewer lost while on the
//! low layer. Times are reported, never asserted: only where each viewer settles, its loss, and
//! the continuity of what it received.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::*;
use oncolive_signaling::RelayConfig;
use oncolive_testkit::netns::NetNamespace;

const RELAY_IP: &str = "192.0.2.1";
const VIEWER_IP: &str = "192.0.2.2";
/// The layers: rid, packets per frame, bytes per packet (30 frames a second).
const LAYERS: [(&str, usize, usize); 3] = [("l", 1, 600), ("m", 2, 1000), ("h", 5, 1100)];
/// How long the publisher sends; the last `SETTLED` of it is where viewers are judged.
const RUN: Duration = Duration::from_secs(45);
const SETTLED: Duration = Duration::from_secs(20);

#[test]
fn each_viewer_gets_the_layer_its_link_carries_or_the_one_it_chose() -> Result<()> {
    let relay_ns = NetNamespace::new("relay")?;
    let viewer_ns = Arc::new(NetNamespace::new("slow")?);
    relay_ns.ip(&["link", "set", "lo", "up"])?;
    relay_ns.veth_to("slow-r", &viewer_ns, "slow-v")?;
    relay_ns.ip(&["addr", "add", &format!("{RELAY_IP}/24"), "dev", "slow-r"])?;
    viewer_ns.ip(&["addr", "add", &format!("{VIEWER_IP}/24"), "dev", "slow-v"])?;
    // 300 kbit/s from the relay to the viewer, with 200 ms of queue (then tail drop).
    relay_ns.tc(&[
        "qdisc", "add", "dev", "slow-r", "root", "tbf", "rate", "300kbit", "burst", "6kb",
        "latency", "200ms",
    ])?;
    let outcome = relay_ns.block_on(run(viewer_ns.clone()))?;
    let stats = relay_ns
        .command("tc")
        .args(["-s", "qdisc", "show", "dev", "slow-r"])
        .output()?;
    println!("{}", String::from_utf8_lossy(&stats.stdout));
    drop(viewer_ns);
    outcome
}

#[tokio::test]
async fn the_layer_endpoint_answers_and_refuses_clearly() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-layer-api";
    let publisher = t.publish(session, VideoCodec::Vp8).await?;
    publisher.wait_connected().await?;
    let mut viewer = t.view(session).await?;
    viewer.wait_connected().await?;
    warm_up(&publisher, &mut [&mut viewer], 0).await?;
    let layer = format!("{}/layer", viewer.resource_url());
    let token = viewer.token().to_owned();

    let state: serde_json::Value = t
        .http
        .get(&layer)
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        state["prefer"] == "auto" && state["current"] == "",
        "{state}"
    );
    ensure!(
        state["layers"][0]["rid"] == "",
        "one layer without a rid: {state}"
    );

    let post = |body: String, content_type: &'static str| {
        t.http
            .post(&layer)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let res = post(r#"{"prefer":"low"}"#.to_owned(), "application/json").await?;
    ensure!(res.status() == 200, "{}", res.status());
    let state: serde_json::Value = res.json().await?;
    ensure!(
        state["prefer"] == "low" && state["current"] == "",
        "{state}"
    );
    for bad in [
        r#"{"prefer":"best"}"#,
        r#"{"prefer":"low","x":1}"#,
        "low",
        "{}",
    ] {
        let res = post(bad.to_owned(), "application/json").await?;
        ensure!(res.status() == 400, "{bad}: {}", res.status());
        let body: serde_json::Value = res.json().await?;
        ensure!(body["error"]["code"] == "bad_request", "{bad}: {body}");
    }
    let res = post(r#"{"prefer":"low"}"#.to_owned(), "text/plain").await?;
    ensure!(res.status() == 415, "{}", res.status());
    let big = format!(r#"{{"prefer":"low","pad":"{}"}}"#, "x".repeat(2000));
    ensure!(post(big, "application/json").await?.status() == 400);
    let res = t.http.get(&layer).send().await?;
    ensure!(res.status() == 401, "no token: {}", res.status());
    let missing = format!("{}/api/sessions/{session}/whep/nope/layer", t.base);
    let res = t.http.get(&missing).bearer_auth(&token).send().await?;
    ensure!(res.status() == 404, "{}", res.status());
    let whip = format!("{}/layer", publisher.resource_url());
    let res = t
        .http
        .get(&whip)
        .bearer_auth(expert(session))
        .send()
        .await?;
    ensure!(
        res.status() == 404,
        "a publisher has no layer: {}",
        res.status()
    );
    // Still the same picture: the only layer, whatever the choice.
    let more = warm_up(&publisher, &mut [&mut viewer], 1000).await;
    ensure!(more.is_ok(), "video stopped after the layer choice");
    Ok(())
}

/// What one viewer received: arrival, layer, frame, kind, sequence number.
#[derive(Debug, Clone, Copy)]
struct Got {
    at: Instant,
    layer: usize,
    frame: u32,
    kind: Kind,
    seq: u16,
}

type Log = Arc<Mutex<Vec<Got>>>;

async fn collect(mut viewer: Viewer, log: Log, until: Instant) -> Viewer {
    while Instant::now() < until {
        let Some(r) = viewer.next_video(until - Instant::now()).await else {
            break;
        };
        log.lock().expect("log").push(Got {
            at: Instant::now(),
            layer: (r.marker >> 24) as usize,
            frame: r.marker & 0xff_ffff,
            kind: r.kind,
            seq: r.seq,
        });
    }
    viewer
}

async fn run(viewer_ns: Arc<NetNamespace>) -> Result<()> {
    let t = spawn_relay_at(
        RelayConfig {
            interfaces: vec!["slow-r".into()],
            ..RelayConfig::default()
        },
        RELAY_IP.parse()?,
    )
    .await?;
    let session = "s-simulcast";
    let rids: Vec<&str> = LAYERS.iter().map(|l| l.0).collect();
    let publisher = Arc::new(
        t.media
            .publisher(session, &expert(session))
            .simulcast(&rids)
            .connect()
            .await?,
    );
    publisher.wait_connected().await?;

    let started = Instant::now();
    let until = started + RUN;
    let sending = Arc::new(AtomicBool::new(true));
    let sender = tokio::spawn({
        let (publisher, sending) = (publisher.clone(), sending.clone());
        async move {
            let mut frame = 0u32;
            let mut keyframes = [0usize; 3];
            while sending.load(Ordering::Relaxed) && Instant::now() < until {
                for (layer, (_, packets, size)) in LAYERS.iter().enumerate() {
                    let kind = if publisher.take_layer_keyframe_request(layer) {
                        keyframes[layer] += 1;
                        Kind::Keyframe
                    } else {
                        Kind::Video
                    };
                    let marker = (layer as u32) << 24 | frame;
                    for i in 0..*packets {
                        let p = payload(kind, marker, 0, *size);
                        publisher
                            .write_layer(layer, p, frame.wrapping_mul(3000), i + 1 == *packets)
                            .await?;
                    }
                }
                publisher
                    .write_audio(
                        payload(Kind::Audio, frame, 0, 100),
                        frame.wrapping_mul(1600),
                    )
                    .await?;
                frame += 1;
                let next = started + Duration::from_micros(33_333 * u64::from(frame));
                tokio::time::sleep_until(next.into()).await;
            }
            anyhow::Ok(keyframes)
        }
    });

    // Three viewers on the relay's host: auto, high, data saver.
    let mut local = Vec::new();
    for prefer in ["auto", "high", "low"] {
        let viewer = t.view(session).await?;
        viewer.wait_connected().await?;
        if prefer != "auto" {
            let res = t
                .http
                .post(format!("{}/layer", viewer.resource_url()))
                .bearer_auth(viewer.token())
                .header("content-type", "application/json")
                .body(format!(r#"{{"prefer":"{prefer}"}}"#))
                .send()
                .await?;
            ensure!(
                res.status().is_success(),
                "layer {prefer}: {}",
                res.status()
            );
        }
        let log = Log::default();
        let (url, token) = (viewer.resource_url(), viewer.token().to_owned());
        local.push((
            prefer,
            log.clone(),
            url,
            token,
            tokio::spawn(collect(viewer, log, until)),
        ));
    }
    // The throttled viewer, auto, in its own namespace.
    let base = t.base.clone();
    let slow_log = Log::default();
    let (slow_url, slow_token, slow) = {
        let log = slow_log.clone();
        let ns = viewer_ns.clone();
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            ns.run(async move {
                let http = reqwest::Client::new();
                let media = MediaClient::new(&base, http, IceTimeouts::Default)?;
                let viewer = media
                    .viewer(session, &fresh_viewer_token(session))
                    .connect()
                    .await?;
                viewer.wait_connected().await?;
                let _ = url_tx.send((viewer.resource_url(), viewer.token().to_owned()));
                let viewer = collect(viewer, log, until).await;
                viewer.close().await;
                anyhow::Ok(())
            })
            .await
        });
        let (url, token) = url_rx
            .await
            .context("the throttled viewer did not connect")?;
        (url, token, task)
    };
    let offered_from = slow_url.clone();

    // Half-way, where the relay says each viewer stands (the layer endpoint of the WHEP draft).
    tokio::time::sleep_until((started + RUN - SETTLED / 2).into()).await;
    let state = |url: String, token: String| {
        let http = t.http.clone();
        async move {
            let res = http
                .get(format!("{url}/layer"))
                .bearer_auth(token)
                .send()
                .await?;
            ensure!(res.status().is_success(), "GET layer: {}", res.status());
            anyhow::Ok(res.json::<serde_json::Value>().await?)
        }
    };
    let slow_state = state(slow_url, slow_token).await?;
    let mut local_states = Vec::new();
    for (prefer, _, url, token, _) in &local {
        local_states.push((*prefer, state(url.clone(), token.clone()).await?));
    }

    let keyframes = sender.await??;
    sending.store(false, Ordering::Relaxed);
    slow.await???;
    let mut logs = Vec::new();
    for (prefer, log, _, _, task) in local {
        task.await?.close().await;
        logs.push((prefer, log));
    }
    println!("keyframes sent per layer (l, m, h): {keyframes:?}");
    println!("the throttled viewer's layer state: {slow_state}");
    for (prefer, s) in &local_states {
        println!("{prefer} viewer's layer state: {s}");
    }
    ensure!(
        slow_state["current"] == "l" && slow_state["prefer"] == "auto",
        "the throttled viewer ({offered_from}): {slow_state}"
    );
    ensure!(
        slow_state["layers"].as_array().map(Vec::len) == Some(3),
        "{slow_state}"
    );
    for (prefer, s) in &local_states {
        let expected = match *prefer {
            "low" => "l",
            _ => "h",
        };
        ensure!(s["current"] == expected, "{prefer} viewer: {s}");
    }

    let settled_from = started + RUN - SETTLED;
    for (prefer, log) in &logs {
        let log = log.lock().expect("log").clone();
        let summary = judge(prefer, &log, settled_from)?;
        let expected = if *prefer == "low" { 0 } else { 2 };
        ensure!(
            summary.share[expected] >= 0.95,
            "{prefer} viewer: {:.0} % of its settled frames on layer {expected}",
            summary.share[expected] * 100.0
        );
        ensure!(
            summary.loss_on[expected] < 0.02,
            "{prefer} viewer lost {:.2} %",
            summary.loss_on[expected] * 100.0
        );
    }
    let slow = slow_log.lock().expect("log").clone();
    let summary = judge("throttled", &slow, settled_from)?;
    ensure!(
        summary.share[0] >= 0.85,
        "the throttled viewer spent {:.0} % of its settled frames on the low layer",
        summary.share[0] * 100.0
    );
    ensure!(
        summary.loss_on[0] < 0.02,
        "the throttled viewer lost {:.2} % of the low layer",
        summary.loss_on[0] * 100.0
    );
    Ok(())
}

struct Summary {
    /// Share of the settled frames received from each layer.
    share: [f64; 3],
    /// Frames missing inside each layer's runs, over the frames of those runs.
    loss_on: [f64; 3],
}

/// Checks what one viewer received and says where it settled.
///
/// - Sequence numbers run on across layer switches: in sequence order, frames of one layer
///   rise, and a switch lands on a keyframe of the new layer (where no packet was lost).
/// - After `settled_from`, the share of frames per layer, and the loss inside each layer's
///   runs (frames of that layer missing between two received ones, no other layer between).
fn judge(name: &str, log: &[Got], settled_from: Instant) -> Result<Summary> {
    ensure!(!log.is_empty(), "{name} viewer received no video");
    // One entry per sequence number (a NACK may bring one twice).
    let by_seq: BTreeMap<u32, Got> = {
        let mut unwrapped = BTreeMap::new();
        let (mut last, mut cycles) = (None::<u16>, 0u32);
        let mut sorted = log.to_vec();
        sorted.sort_by_key(|g| g.at);
        for g in sorted {
            if let Some(prev) = last
                && g.seq < prev
                && prev - g.seq > 0x8000
            {
                cycles += 1;
            }
            last = Some(g.seq);
            unwrapped
                .entry(cycles << 16 | u32::from(g.seq))
                .or_insert(g);
        }
        unwrapped
    };
    let mut switches = Vec::new();
    let mut prev: Option<&Got> = None;
    for g in by_seq.values() {
        if let Some(p) = prev {
            // A switch with packets lost right at it (a throttled link) cannot be checked.
            if p.layer != g.layer && g.seq == p.seq.wrapping_add(1) {
                ensure!(
                    g.kind == Kind::Keyframe,
                    "{name} viewer: switch from layer {} to {} on a non-keyframe (seq {} → {})",
                    p.layer,
                    g.layer,
                    p.seq,
                    g.seq
                );
                switches.push((p.layer, g.layer));
            } else if p.layer != g.layer {
                switches.push((p.layer, g.layer));
            } else {
                ensure!(
                    g.frame >= p.frame,
                    "{name} viewer: layer {} goes back from frame {} to {}",
                    g.layer,
                    p.frame,
                    g.frame
                );
            }
        }
        prev = Some(g);
    }
    // Frames (layer, frame) received after the settle point, in frame order.
    let mut frames: BTreeMap<u32, usize> = BTreeMap::new();
    for g in log.iter().filter(|g| g.at >= settled_from) {
        frames.entry(g.frame).or_insert(g.layer);
    }
    let total = frames.len().max(1) as f64;
    let mut share = [0.0; 3];
    let (mut held, mut missing) = ([0u32; 3], [0u32; 3]);
    let mut last: Option<(u32, usize)> = None;
    for (&frame, &layer) in &frames {
        share[layer] += 1.0 / total;
        held[layer] += 1;
        if let Some((f, l)) = last
            && l == layer
        {
            missing[layer] += frame - f - 1;
        }
        last = Some((frame, layer));
    }
    let loss_on = [0, 1, 2].map(|l| {
        let all = held[l] + missing[l];
        if all == 0 {
            0.0
        } else {
            f64::from(missing[l]) / f64::from(all)
        }
    });
    println!(
        "{name} viewer: {} packets, switches {switches:?}; settled {:.0} s: frames per layer \
         l/m/h {:.1} % / {:.1} % / {:.1} %, loss inside runs {:.2} % / {:.2} % / {:.2} %",
        log.len(),
        SETTLED.as_secs_f64(),
        share[0] * 100.0,
        share[1] * 100.0,
        share[2] * 100.0,
        loss_on[0] * 100.0,
        loss_on[1] * 100.0,
        loss_on[2] * 100.0,
    );
    Ok(Summary { share, loss_on })
}
