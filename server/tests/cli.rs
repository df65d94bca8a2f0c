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
        expert_profile: None,
        record: None,
        videos: Vec::new(),
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

/// Outside `--demo`, `serve` prints and logs no token (only the command that makes one); the
/// ready file and the generated secret are owner-only; a secret from `--secret-file` is the
/// one `oncolive token --secret-file` signs with.
#[tokio::test]
async fn serve_prints_no_token_and_keeps_its_secrets_owner_only() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir()?;
    let mode = |path: &std::path::Path| -> anyhow::Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    };
    let run = |args: &[&str], name: &str| -> anyhow::Result<std::process::Child> {
        let out = std::fs::File::create(data.path().join(format!("{name}.out")))?;
        let err = std::fs::File::create(data.path().join(format!("{name}.err")))?;
        Ok(Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("ONCOLIVE_SECRET")
            .env_remove("ONCOLIVE_REDIS_URL")
            .env("RUST_LOG", "debug")
            .stdout(out)
            .stderr(err)
            .spawn()?)
    };
    let stop = |mut child: std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    };

    // The generated secret in the data directory.
    let dir = data.path().join("data");
    let ready = data.path().join("ready.json");
    let server = run(
        &[
            "--data-dir",
            dir.to_str().context("utf-8 path")?,
            "--ready-file",
            ready.to_str().context("utf-8 path")?,
        ],
        "generated",
    )?;
    let info = wait_ready(&ready).await;
    stop(server);
    let info = info?;
    let admin = info["admin_token"].as_str().context("admin_token")?;
    assert_eq!(mode(&ready)?, 0o600, "the ready file holds an admin token");
    assert_eq!(mode(&dir.join("secret"))?, 0o600);
    let out = std::fs::read_to_string(data.path().join("generated.out"))?;
    let err = std::fs::read_to_string(data.path().join("generated.err"))?;
    for text in [&out, &err] {
        assert!(!text.contains(admin), "a token was printed: {text}");
        // Every token is a JWT, and every JWT starts with this.
        assert!(
            !text.contains("eyJ"),
            "something token-like was printed: {text}"
        );
    }
    assert!(
        out.contains("oncolive token --role admin --data-dir"),
        "no command to make a token: {out}"
    );

    // A secret from a file; the CLI reading the same file makes tokens the server accepts.
    let secret = data.path().join("secret.txt");
    std::fs::write(&secret, "a-secret-kept-in-a-file-0123456789\n")?;
    std::fs::remove_file(&ready)?;
    let server = run(
        &[
            "--data-dir",
            dir.to_str().context("utf-8 path")?,
            "--secret-file",
            secret.to_str().context("utf-8 path")?,
            "--ready-file",
            ready.to_str().context("utf-8 path")?,
        ],
        "file",
    )?;
    let used = async {
        let info = wait_ready(&ready).await?;
        let url = info["url"].as_str().context("url")?;
        let made = Command::new(BIN)
            .args(["token", "--role", "admin", "--secret-file"])
            .arg(&secret)
            .output()?;
        ensure!(made.status.success(), "oncolive token --secret-file failed");
        let token = String::from_utf8(made.stdout)?.trim().to_owned();
        ApiClient::new(url, token.as_str())
            .me(&token)
            .await
            .context("a token signed with the file's secret is accepted")?;
        // The data directory's generated secret is not the one in use.
        let other = token_in(&dir)?;
        ensure!(
            ApiClient::new(url, other.as_str())
                .me(&other)
                .await
                .is_err(),
            "a token of another secret was accepted"
        );
        anyhow::Ok(())
    }
    .await;
    stop(server);
    used?;
    let out = std::fs::read_to_string(data.path().join("file.out"))?;
    assert!(out.contains("--secret-file"), "{out}");
    Ok(())
}

fn token_in(data: &std::path::Path) -> anyhow::Result<String> {
    let out = token(data, &["--role", "admin"]);
    ensure!(out.status.success(), "oncolive token failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

async fn wait_ready(ready: &std::path::Path) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(ready)
            && let Ok(info) = serde_json::from_str::<Value>(&text)
        {
            return Ok(info);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("server never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
