//! Short runs of each scenario against a server started in this process, asserting correctness
//! only (nothing lost, duplicated or reordered; clean exit), never speed. The video test needs a
//! loopback-only network namespace, as `scripts/test.sh` provides.

use oncolive_load::common::local_config;
use oncolive_load::qa::{self, QaConfig};
use oncolive_load::video::{self, VideoConfig};
use oncolive_testkit::{TestApp, spawn_app};

async fn server() -> TestApp {
    spawn_app(local_config()).await.expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_200_patients_with_a_reconnect_storm_lose_nothing() {
    let server = server().await;
    let report = qa::run(QaConfig {
        urls: vec![server.url.clone()],
        admin_token: Some(server.admin.clone()),
        patients: 200,
        duration_s: 4.0,
        connect_rate: 1000.0,
        ask_rate: 20.0,
        vote_rate: 200.0,
        answer_every_s: 0.5,
        stalled: 1,
        storm_at_s: Some(1.0),
        storm_window_s: 1.0,
        settle_s: 20.0,
        progress: false,
        ..QaConfig::default()
    })
    .await
    .expect("the run completes");
    let table = oncolive_load::report::qa_markdown(&report);
    assert_eq!(report.connect_failures, 0, "{table}");
    assert_eq!(report.patients_connected, 200, "{table}");
    assert!(report.completeness.ok, "{table}");
    assert_eq!(report.completeness.checked_patients, 199, "{table}");
    assert!(report.approvals > 0, "{table}");
    assert!(report.public_events > report.approvals, "{table}");
    let storm = report.storm.as_ref().expect("storm report");
    assert_eq!(storm.reconnected, 199, "{table}");
    assert_eq!(storm.failed, 0, "{table}");
    // Votes reach patients coalesced, never one message per vote.
    assert!(report.vote_updates_per_patient_s < 10.0, "{table}");
    assert!(report.approval_to_last.count > 0, "{table}");
    let mut server = server;
    server.shutdown().await.expect("server stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_5_viewers_receive_the_stream() {
    let server = server().await;
    let report = video::run(VideoConfig {
        url: server.url.clone(),
        admin_token: Some(server.admin.clone()),
        viewers: 5,
        bitrate_kbps: 300,
        duration_s: 3.0,
        connect_rate: 50.0,
        progress: false,
        ..VideoConfig::default()
    })
    .await
    .expect("the run completes");
    let table = oncolive_load::report::video_markdown(&report);
    assert_eq!(report.viewers_connected, 5, "{table}");
    assert_eq!(
        report.first_frame.count, 5,
        "every viewer got a keyframe: {table}"
    );
    assert!(report.video_packets_expected > 0, "{table}");
    // Loopback drops nothing unless the machine is overloaded; allow a packet or two.
    assert!(report.video_loss_pct < 1.0, "{table}");
    // The relay's numbers reach /metrics, as node totals.
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "oncolive_video_packets_forwarded_total{kind=\"video\"}",
        "oncolive_video_bytes_forwarded_total{kind=\"video\"}",
        "oncolive_video_keyframe_requests_total{",
        "oncolive_video_viewers ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics"
        );
    }
    let forwarded: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("oncolive_video_packets_forwarded_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(forwarded > 0.0, "no forwarded packets counted");
    let mut server = server;
    server.shutdown().await.expect("server stops cleanly");
}
