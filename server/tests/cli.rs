//! The `oncolive` binary as an operator uses it: `token` and `serve --demo` agree on the secret
//! kept in the data directory, and SIGTERM shuts down cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use oncolive_server::model::{Moderation, NewSession, SessionId, SessionState};
use oncolive_testkit::ApiClient;
use serde_json::Value;
use time::macros::datetime;

const BIN: &str = env!("CARGO_BIN_EXE_oncolive");

fn token(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("token")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("ONCOLIVE_SECRET")
        .output()
        .expect("oncolive token runs")
}

#[tokio::test]
async fn tokens_printed_by_the_cli_work_against_the_server_on_the_same_machine()
-> anyhow::Result<()> {
    let data = tempfile::tempdir().unwrap();
    let admin = token(data.path(), &["--role", "admin"]);
    assert!(admin.status.success());
    let admin = String::from_utf8(admin.stdout).unwrap().trim().to_owned();

    let missing = token(data.path(), &["--role", "expert"]);
    assert!(!missing.status.success(), "an expert token needs --session");

    let ready = data.path().join("ready.json");
    let mut server = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--demo", "--data-dir"])
        .arg(data.path())
        .arg("--ready-file")
        .arg(&ready)
        .env_remove("ONCOLIVE_SECRET")
        .env_remove("ONCOLIVE_REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    // Whatever it finds, the server is stopped below.
    let used = use_the_demo_server(&ready, data.path(), admin).await;

    // SIGTERM: a clean exit.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    used?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// Waits for the server's ready file, then acts with the CLI's admin token and an expert token
/// the CLI prints for the demo session.
async fn use_the_demo_server(
    ready: &std::path::Path,
    data: &std::path::Path,
    admin: String,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !ready.exists() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("server never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info: Value = serde_json::from_slice(&std::fs::read(ready)?)?;
    let url = info["url"].as_str().context("the server's url")?.to_owned();
    let demo: SessionId = info["demo"]["session"]["id"]
        .as_str()
        .context("the demo session's id")?
        .parse()?;
    ensure!(
        info["demo"]["links"]["moderator"]
            .as_str()
            .context("the demo's moderator link")?
            .contains("#token="),
        "the demo's moderator link carries a token"
    );

    let api = ApiClient::new(url, admin);
    api.create(&NewSession {
        title: "Breast self-exam".into(),
        topic: String::new(),
        expert_name: "Dr. Liu".into(),
        scheduled_start: datetime!(2026-12-02 09:00 UTC),
        moderation: Moderation::default(),
    })
    .await
    .context("the CLI's admin token is accepted")?;

    let expert = token(data, &["--role", "expert", "--session", &demo.to_string()]);
    let expert = String::from_utf8(expert.stdout)?.trim().to_owned();
    api.set_state(demo, &expert, SessionState::Live)
        .await
        .context("the CLI's expert token acts in its session")?;

    Ok(())
}
