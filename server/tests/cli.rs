//! The `oncolive` binary as an operator uses it: `token` and `serve --demo` agree on the secret
//! kept in the data directory, and SIGTERM shuts down cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
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
    let started = Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let url = info["url"].as_str().unwrap().to_owned();
    let demo: SessionId = info["demo"]["session"]["id"]
        .as_str()
        .context("the demo session's id")?
        .parse()?;
    assert!(
        info["demo"]["links"]["moderator"]
            .as_str()
            .unwrap()
            .contains("#token=")
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

    let expert = token(
        data.path(),
        &["--role", "expert", "--session", &demo.to_string()],
    );
    let expert = String::from_utf8(expert.stdout)?.trim().to_owned();
    api.set_state(demo, &expert, SessionState::Live)
        .await
        .context("the CLI's expert token acts in its session")?;

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
    assert!(status.success(), "exit status {status}");
    Ok(())
}
