//! The TURN credentials the relay mints work on a real coturn, and stop
//! working once they expire; a viewer whose network drops every UDP packet
//! plays through coturn over TCP. Starts `turnserver` (Debian package
//! `coturn`) on a free port with the TURN REST API shared secret; no config
//! file, no daemon. Run inside `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling'`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use oncolive_signaling::{IceServer, RelayConfig, TurnAuth, TurnSecret};
use oncolive_testkit::aiortc::{PyPublisher, python};
use oncolive_testkit::netns::NetNamespace;
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

/// coturn on 127.0.0.1 of the test's namespace.
fn start_coturn() -> Result<Coturn> {
    start_coturn_at("127.0.0.1", free_port()?, Command::new("turnserver"))
}

/// coturn listening and relaying on `ip`, started by `command` (`turnserver`, maybe inside a
/// namespace).
fn start_coturn_at(ip: &str, port: u16, mut command: Command) -> Result<Coturn> {
    let dir = tempfile::tempdir()?;
    // COTURN_LOG=PATH keeps coturn's log for a failing run.
    let log = std::env::var_os("COTURN_LOG").map_or_else(
        || dir.path().join("turnserver.log"),
        std::path::PathBuf::from,
    );
    let log = std::fs::File::create(log)?;
    let child = command
        .args([
            "-n", // no configuration file
            &format!("--listening-ip={ip}"),
            &format!("--relay-ip={ip}"),
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

const RELAY_IP: &str = "192.0.2.1";
const VIEWER_IP: &str = "192.0.2.2";

/// Drops every UDP packet in or out of the namespace it is loaded in, as some hospital and
/// carrier networks do.
const NO_UDP: &str = "table inet no_udp {
    chain input { type filter hook input priority 0; meta l4proto udp counter drop; }
    chain output { type filter hook output priority 0; meta l4proto udp counter drop; }
}
";

/// The aiortc WHEP viewer (testkit/py/whep_view.py) in `ns`: its output lines once it ends.
async fn aiortc_view(
    ns: &NetNamespace,
    url: &str,
    token: &str,
    seconds: u32,
    extra: &[&str],
) -> Result<(bool, Vec<String>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/py/whep_view.py");
    let mut command = ns.command(&python()?);
    command
        .arg(script)
        .args([url, token, &seconds.to_string()])
        .args(extra);
    let run = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60 + u64::from(seconds)), run)
        .await
        .context("the aiortc viewer did not end")??;
    let lines = String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();
    if !out.status.success() {
        eprintln!("viewer: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((out.status.success(), lines))
}

/// A viewer on a network that drops all UDP (nftables in its own namespace) cannot reach the
/// relay directly, and plays through coturn over TCP with the credential the relay minted;
/// the publisher and the viewer are aiortc, the video real VP8.
#[test]
fn a_viewer_whose_udp_is_blocked_plays_through_turn_over_tcp() -> Result<()> {
    let relay_ns = NetNamespace::new("relay")?;
    let viewer_ns = Arc::new(NetNamespace::new("viewer")?);
    relay_ns.ip(&["link", "set", "lo", "up"])?;
    viewer_ns.ip(&["link", "set", "lo", "up"])?;
    relay_ns.veth_to("net-r", &viewer_ns, "net-v")?;
    relay_ns.ip(&["addr", "add", &format!("{RELAY_IP}/24"), "dev", "net-r"])?;
    viewer_ns.ip(&["addr", "add", &format!("{VIEWER_IP}/24"), "dev", "net-v"])?;
    viewer_ns.nft(NO_UDP)?;

    // coturn beside the relay (as one would run it on the relay's host), listening on TCP
    // and UDP; only its TCP side is reachable from the viewer.
    let port = 3478;
    let coturn = start_coturn_at(RELAY_IP, port, relay_ns.command("turnserver"))?;
    let outcome = relay_ns.block_on({
        let viewer_ns = viewer_ns.clone();
        async move { play_through_turn(viewer_ns, port).await }
    })?;
    drop(coturn);
    outcome
}

async fn play_through_turn(viewer_ns: Arc<NetNamespace>, port: u16) -> Result<()> {
    let secret = TurnSecret::new(SECRET).map_err(anyhow::Error::msg)?;
    let t = spawn_relay_at(
        RelayConfig {
            interfaces: vec!["net-r".into()],
            ice_servers: vec![IceServer {
                urls: vec![format!("turn:{RELAY_IP}:{port}?transport=tcp")],
            }],
            turn: Some(TurnAuth {
                secret,
                ttl: Duration::from_secs(600),
            }),
            ..RelayConfig::default()
        },
        RELAY_IP.parse()?,
    )
    .await?;
    let session = "s-no-udp";
    let whip = format!("{}/api/sessions/{session}/whip", t.base);
    let publisher = PyPublisher::start(&whip, &expert(session), "vp8", 40.0).await?;
    let whep = format!("{}/api/sessions/{session}/whep", t.base);

    // The direct path alone fails: the block is real.
    let (ok, lines) = aiortc_view(
        &viewer_ns,
        &whep,
        &fresh_viewer_token(session),
        2,
        &["--no-ice-servers"],
    )
    .await?;
    ensure!(
        !ok && lines.iter().any(|l| l == "FAILED"),
        "connected without UDP and without TURN: {lines:?}"
    );

    // With the relay's ICE servers (the TURN URL and a minted credential), it plays.
    let (ok, lines) = aiortc_view(&viewer_ns, &whep, &fresh_viewer_token(session), 8, &[]).await?;
    ensure!(ok, "the viewer failed: {lines:?}");
    ensure!(
        lines.iter().any(|l| l == "CONNECTED relay tcp"),
        "not relayed over TCP: {lines:?}"
    );
    let received = lines
        .iter()
        .find_map(|l| l.strip_prefix("RECEIVED "))
        .context("no RECEIVED line")?;
    let count = |key: &str| -> Result<u32> {
        received
            .split(' ')
            .find_map(|f| f.strip_prefix(key))
            .context("a count")?
            .parse()
            .map_err(Into::into)
    };
    let (video, audio) = (count("video=")?, count("audio=")?);
    println!("through TURN/TCP in 8 s: {video} video frames, {audio} audio frames decoded");
    // 8 s at 30 fps and 50 audio frames/s; the bound leaves room for a slow, shared machine.
    ensure!(video >= 60 && audio >= 150, "{received}");
    publisher.kill().await?;
    Ok(())
}
