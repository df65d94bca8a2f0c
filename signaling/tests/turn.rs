//! The TURN credentials the relay mints work on a real coturn, and stop
//! working once they expire. Starts `turnserver` (Debian package `coturn`) on
//! a free loopback port with the TURN REST API shared secret; no config file,
//! no daemon. Run inside `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling'`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use oncolive_signaling::{IceServer, RelayConfig, TurnAuth, TurnSecret};
use webrtc::turn::client::{Client, ClientConfig};

const SECRET: &str = "coturn-test-secret";

struct Coturn {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    // A port free for both UDP and TCP: coturn listens on both.
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

fn start_coturn() -> Result<Coturn> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("turnserver.log"))?;
    let child = Command::new("turnserver")
        .args([
            "-n", // no configuration file
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--use-auth-secret",
            &format!("--static-auth-secret={SECRET}"),
            "--realm=oncolive.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-tcp-relay",
            "--simple-log",
            "--log-file=stdout",
            &format!("--pidfile={}", dir.path().join("turnserver.pid").display()),
            &format!("--userdb={}", dir.path().join("turndb").display()),
        ])
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting turnserver (apt-get install coturn)")?;
    Ok(Coturn {
        child,
        port,
        _dir: dir,
    })
}

/// A TURN Allocate with `username`/`password`; `Ok` means the server accepted the credential.
async fn allocate(port: u16, username: &str, password: &str) -> Result<()> {
    let conn = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
    let client = Client::new(ClientConfig {
        stun_serv_addr: String::new(),
        turn_serv_addr: format!("127.0.0.1:{port}"),
        username: username.to_owned(),
        password: password.to_owned(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await?;
    client.listen().await?;
    let allocated = client.allocate().await.map(|_relayed| ());
    client.close().await?;
    Ok(allocated?)
}

/// The `username` and `credential` of the `Link` header of a TURN URL.
fn turn_credential(links: &[String]) -> Result<(String, String)> {
    let link = links
        .iter()
        .find(|l| l.starts_with("<turn:"))
        .context("a TURN link")?;
    let field = |name: &str| -> Result<String> {
        let start = link.find(&format!("{name}=\"")).context("field")? + name.len() + 2;
        let end = link[start..].find('"').context("quote")? + start;
        Ok(link[start..end].to_owned())
    };
    Ok((field("username")?, field("credential")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_credentials_work_on_coturn_and_expired_ones_do_not() -> Result<()> {
    let coturn = start_coturn()?;
    let secret = TurnSecret::new(SECRET).map_err(anyhow::Error::msg)?;
    let t = spawn_relay(RelayConfig {
        ice_servers: vec![IceServer {
            urls: vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)],
        }],
        turn: Some(TurnAuth {
            secret: secret.clone(),
            ttl: Duration::from_secs(600),
        }),
        ..RelayConfig::default()
    })
    .await?;

    // What a viewer gets from the relay, used as a browser would.
    let session = "s-coturn";
    let response = t
        .http
        .post(format!("{}/api/sessions/{session}/whep", t.base))
        .bearer_auth(viewer_token(session))
        .header("content-type", "application/sdp")
        .body(OFFER)
        .send()
        .await?;
    ensure!(response.status() == reqwest::StatusCode::CREATED);
    let links: Vec<String> = response
        .headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let (username, credential) = turn_credential(&links)?;

    // coturn needs a moment to listen: retry the good credential until it answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match allocate(coturn.port, &username, &credential).await {
            Ok(()) => break,
            Err(err) if Instant::now() > deadline => bail!("minted credential refused: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    // Expired a minute ago: same secret, same scheme, refused.
    let expired = secret.credential("late-viewer", SystemTime::now() - Duration::from_secs(60));
    let refused = allocate(coturn.port, &expired.username, &expired.credential).await;
    ensure!(refused.is_err(), "an expired credential was accepted");

    // A credential not made with the shared secret is refused too.
    let forged = TurnSecret::new("not-the-secret")
        .map_err(anyhow::Error::msg)?
        .credential("forger", SystemTime::now() + Duration::from_secs(600));
    let refused = allocate(coturn.port, &forged.username, &forged.credential).await;
    ensure!(refused.is_err(), "a forged credential was accepted");

    // And the good one still works (the refusals were not the server going away).
    allocate(coturn.port, &username, &credential).await?;
    Ok(())
}
