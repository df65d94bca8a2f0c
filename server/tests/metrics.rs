//! `/metrics` of a fresh node has every documented series, the gauges follow sessions and
//! sockets up and down, and the example alert rules and Grafana dashboard in docs/ name only
//! metrics that exist.
//!
//! One test: the Prometheus recorder is process-wide, so two servers in this binary would
//! share their gauges.

use std::collections::BTreeSet;
use std::time::Duration;

use oncolive_server::Config;
use oncolive_server::model::{Moderation, SessionState};
use oncolive_testkit::spawn_app;

/// Every metric docs/operations.md documents, server and relay.
const DOCUMENTED: [&str; 13] = [
    "oncolive_ws_connections",
    "oncolive_sessions",
    "oncolive_ws_messages_in_total",
    "oncolive_ws_messages_out_total",
    "oncolive_ws_slow_disconnects_total",
    "oncolive_commit_conflicts_total",
    "oncolive_rate_limited_total",
    "oncolive_questions_total",
    "oncolive_video_publishers",
    "oncolive_video_viewers",
    "oncolive_video_keyframe_requests_total",
    "oncolive_video_packets_forwarded_total",
    "oncolive_video_bytes_forwarded_total",
];

/// The value of the sample `series` (name and labels as rendered), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Metric names as they appear in `text`: `oncolive_` followed by name characters.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("oncolive_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The alert rules: the ```yaml block after the "Alert rules" heading of docs/operations.md.
fn alert_rules() -> String {
    let doc = include_str!("../../docs/operations.md");
    let section = doc
        .split_once("### Alert rules")
        .map(|(_, s)| s)
        .expect("docs/operations.md has an Alert rules section");
    let block = section
        .split_once("```yaml\n")
        .and_then(|(_, s)| s.split_once("```"))
        .map(|(block, _)| block)
        .expect("the Alert rules section has a yaml block");
    block.to_owned()
}

/// Prometheus's rule checker, where installed (Debian package `prometheus`).
fn promtool() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join("promtool"))
        .find(|p| p.is_file())
}

async fn poll_until(
    app: &oncolive_testkit::TestApp,
    series: &str,
    want: f64,
) -> anyhow::Result<String> {
    for _ in 0..100 {
        let metrics = app.metrics().await?;
        if sample(&metrics, series) == Some(want) {
            return Ok(metrics);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{series} never became {want}:\n{}", app.metrics().await?)
}

#[tokio::test]
async fn a_fresh_node_exports_every_series_and_gauges_go_down_when_things_end() -> anyhow::Result<()>
{
    let app = spawn_app(Config::for_tests()).await?;
    let fresh = app.metrics().await?;
    for name in DOCUMENTED {
        assert!(
            fresh.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{fresh}"
        );
        assert!(
            fresh.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}:\n{fresh}"
        );
    }
    for series in [
        "oncolive_sessions{state=\"scheduled\"}",
        "oncolive_sessions{state=\"live\"}",
        "oncolive_sessions{state=\"ended\"}",
        "oncolive_ws_connections{role=\"patient\"}",
        "oncolive_ws_connections{role=\"moderator\"}",
        "oncolive_ws_connections{role=\"expert\"}",
        "oncolive_ws_connections{role=\"admin\"}",
        "oncolive_questions_total{state=\"submitted\"}",
        "oncolive_questions_total{state=\"approved\"}",
        "oncolive_ws_slow_disconnects_total",
        "oncolive_commit_conflicts_total",
        "oncolive_rate_limited_total",
        "oncolive_video_publishers",
        "oncolive_video_viewers",
        "oncolive_video_packets_forwarded_total{kind=\"video\"}",
        "oncolive_video_keyframe_requests_total{source=\"viewer_join\",sent=\"forwarded\"}",
    ] {
        assert_eq!(sample(&fresh, series), Some(0.0), "{series}:\n{fresh}");
    }

    // Sessions by state follow the session through its life.
    let s = app.create_session(Moderation::Pre).await?;
    let metrics = app.metrics().await?;
    assert_eq!(
        sample(&metrics, "oncolive_sessions{state=\"scheduled\"}"),
        Some(1.0)
    );
    app.set_state(s.id, &s.expert, SessionState::Live).await?;
    let metrics = app.metrics().await?;
    assert_eq!(
        sample(&metrics, "oncolive_sessions{state=\"scheduled\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "oncolive_sessions{state=\"live\"}"),
        Some(1.0)
    );

    // Sockets by role: up while open, down when closed.
    let (mut patient, _) = app.connect_patient(s.id).await?;
    let (moderator, _) = app.connect(s.id, &s.moderator).await?;
    poll_until(&app, "oncolive_ws_connections{role=\"patient\"}", 1.0).await?;
    poll_until(&app, "oncolive_ws_connections{role=\"moderator\"}", 1.0).await?;
    let asked = patient.ask("Does the FIT test hurt?").await?;
    let metrics = app.metrics().await?;
    assert_eq!(
        sample(&metrics, "oncolive_questions_total{state=\"submitted\"}"),
        Some(1.0)
    );
    assert!(asked.id > 0);
    drop(patient);
    drop(moderator);
    poll_until(&app, "oncolive_ws_connections{role=\"patient\"}", 0.0).await?;
    poll_until(&app, "oncolive_ws_connections{role=\"moderator\"}", 0.0).await?;

    app.set_state(s.id, &s.expert, SessionState::Ended).await?;
    let metrics = app.metrics().await?;
    assert_eq!(
        sample(&metrics, "oncolive_sessions{state=\"live\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "oncolive_sessions{state=\"ended\"}"),
        Some(1.0)
    );

    // The docs' alert rules and dashboard name only metrics a node exports.
    let exported = names_in(&fresh);
    let rules = alert_rules();
    assert!(
        rules.contains("groups:") && rules.contains("alert:"),
        "{rules}"
    );
    if let Some(promtool) = promtool() {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), &rules)?;
        let out = std::process::Command::new(promtool)
            .args(["check", "rules"])
            .arg(file.path())
            .output()?;
        assert!(
            out.status.success(),
            "promtool refuses the alert rules: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/oncolive.json"))?;
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let panels = dashboard["panels"].as_array().map_or(0, Vec::len);
    assert!(panels >= 6, "the dashboard has {panels} panels");
    for (what, text) in [("alert rules", rules), ("dashboard", dashboard.to_string())] {
        let named = names_in(&text);
        assert!(!named.is_empty(), "{what} name no metric");
        for name in named {
            assert!(
                exported.contains(&name),
                "{what} use {name}, which /metrics does not export"
            );
        }
    }
    Ok(())
}
