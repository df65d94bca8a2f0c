//! What the relay exposes and how much one client may take: announced
//! addresses, refused client candidates, viewer budgets, the `503` when no
//! candidate can be gathered, freed rooms and minted TURN credentials.
//! Run inside `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling'`
//! (a loopback-only namespace, where loopback is the host's only interface and
//! so is announced and accepted by default).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use oncolive_signaling::{IceServer, Relay, RelayConfig, TurnAuth, TurnSecret};
use reqwest::StatusCode;

/// A `POST` of [`OFFER`] (plus `extra` lines in its media section) to WHEP.
struct Posted {
    status: StatusCode,
    code: String,
    message: String,
    location: Option<String>,
    links: Vec<String>,
    answer: String,
}

async fn post_offer(t: &TestRelay, session: &str, token: &str, extra: &str) -> Result<Posted> {
    let response = t
        .http
        .post(format!("{}/api/sessions/{session}/whep", t.base))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(format!("{OFFER}{extra}"))
        .send()
        .await?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let links = response
        .headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let text = response.text().await?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    Ok(Posted {
        status,
        code: json["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        message: json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        location,
        links,
        answer: text,
    })
}

async fn delete(t: &TestRelay, location: &str, token: &str) -> Result<StatusCode> {
    Ok(t.http
        .delete(format!("{}{location}", t.base))
        .bearer_auth(token)
        .send()
        .await?
        .status())
}

fn candidate_addresses(sdp: &str) -> Vec<IpAddr> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .filter_map(|l| l.split_ascii_whitespace().nth(4)?.parse().ok())
        .collect()
}

/// Polls `done` until it holds; fails after a generous deadline (never a speed claim).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        if Instant::now() > deadline {
            bail!("never happened: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn answers_announce_only_the_configured_interfaces() -> Result<()> {
    // Default: every interface but loopback, and loopback when it is all there is (here).
    let t = spawn_relay(RelayConfig::default()).await?;
    let posted = post_offer(&t, "s-announce", &viewer_token("s-announce"), "").await?;
    ensure!(posted.status == StatusCode::CREATED, "{}", posted.answer);
    let addresses = candidate_addresses(&posted.answer);
    ensure!(!addresses.is_empty(), "no candidates: {}", posted.answer);
    ensure!(
        addresses.iter().all(IpAddr::is_loopback),
        "only loopback exists here: {addresses:?}"
    );

    // An interface list that matches nothing announces nothing: 503, not a silent 201.
    let t = spawn_relay(RelayConfig {
        interfaces: vec!["no-such-interface".into()],
        ..RelayConfig::default()
    })
    .await?;
    let posted = post_offer(&t, "s-none", &viewer_token("s-none"), "").await?;
    ensure!(
        posted.status == StatusCode::SERVICE_UNAVAILABLE && posted.code == "no_ice_candidates",
        "{} {}",
        posted.status,
        posted.answer
    );
    // The failed request leaves no room behind.
    eventually("the failed viewer's room is freed", || {
        t.relay.room_count() == 0
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn exhausted_udp_ports_answer_503_until_a_viewer_leaves() -> Result<()> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let t = spawn_relay(RelayConfig {
        udp_port_range: Some((port, port)),
        ..RelayConfig::default()
    })
    .await?;
    let session = "s-ports";
    let first = post_offer(&t, session, &viewer_token(session), "").await?;
    ensure!(first.status == StatusCode::CREATED, "{}", first.answer);
    ensure!(!candidate_addresses(&first.answer).is_empty());

    let second = post_offer(&t, session, &viewer_token(session), "").await?;
    ensure!(
        second.status == StatusCode::SERVICE_UNAVAILABLE && second.code == "no_ice_candidates",
        "port range of one is used up: {} {}",
        second.status,
        second.answer
    );
    ensure!(second.message.contains("try again"), "{}", second.message);

    let location = first.location.context("location")?;
    ensure!(delete(&t, &location, &viewer_token(session)).await? == StatusCode::OK);
    // The port is free again once the first viewer's connection is closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let again = post_offer(&t, session, &viewer_token(session), "").await?;
        if again.status == StatusCode::CREATED {
            ensure!(!candidate_addresses(&again.answer).is_empty());
            break;
        }
        ensure!(again.code == "no_ice_candidates", "{}", again.answer);
        ensure!(Instant::now() < deadline, "the port never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test]
async fn trickled_candidates_for_dangerous_addresses_are_refused() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-trickle";
    let token = viewer_token(session);
    let posted = post_offer(&t, session, &token, "").await?;
    ensure!(posted.status == StatusCode::CREATED, "{}", posted.answer);
    let url = format!("{}{}", t.base, posted.location.context("location")?);
    let patch = |address: &str| {
        let body = format!(
            "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 {address} 50000 typ host\r\n"
        );
        t.http
            .patch(&url)
            .bearer_auth(&token)
            .header("content-type", "application/trickle-ice-sdpfrag")
            .body(body)
            .send()
    };
    for (address, why) in [
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.3.4", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("metadata.google.internal", "host name"),
    ] {
        let response = patch(address).await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        ensure!(
            status == StatusCode::UNPROCESSABLE_ENTITY,
            "{address}: {status} {body}"
        );
        ensure!(body["error"]["code"] == "forbidden_candidate", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains(address) && message.contains(why),
            "{address}: {message}"
        );
    }
    // Ordinary addresses, mDNS names (ignored) and, here, loopback are fine.
    for address in ["192.0.2.10", "2001:db8::10", "f00d-1234.local", "127.0.0.1"] {
        let status = patch(address).await?.status();
        ensure!(status == StatusCode::NO_CONTENT, "{address}: {status}");
    }
    Ok(())
}

#[tokio::test]
async fn offers_lose_refused_candidates_and_fail_when_none_is_left() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-offer";
    let token = viewer_token(session);
    let metadata = "a=candidate:1 1 udp 2130706431 169.254.169.254 80 typ host\r\n";
    let posted = post_offer(&t, session, &token, metadata).await?;
    ensure!(
        posted.status == StatusCode::UNPROCESSABLE_ENTITY && posted.code == "forbidden_candidate",
        "{} {}",
        posted.status,
        posted.answer
    );
    ensure!(
        posted.message.contains("169.254.169.254"),
        "{}",
        posted.message
    );

    let mixed = format!("{metadata}a=candidate:2 1 udp 2130706431 192.0.2.10 5000 typ host\r\n");
    let posted = post_offer(&t, session, &token, &mixed).await?;
    ensure!(posted.status == StatusCode::CREATED, "{}", posted.answer);
    Ok(())
}

#[tokio::test]
async fn viewer_budgets_per_token_address_and_session() -> Result<()> {
    let t = spawn_relay(RelayConfig {
        max_viewers_per_token: 1,
        max_viewers_per_address: 2,
        ..RelayConfig::default()
    })
    .await?;
    let session = "s-budget";
    let token = |name: &str| format!("viewer:{session}:{name}");

    let a = post_offer(&t, session, &token("a"), "").await?;
    ensure!(a.status == StatusCode::CREATED, "{}", a.answer);
    let again = post_offer(&t, session, &token("a"), "").await?;
    ensure!(
        again.status == StatusCode::TOO_MANY_REQUESTS && again.code == "too_many_viewers_for_token",
        "{} {}",
        again.status,
        again.answer
    );
    let b = post_offer(&t, session, &token("b"), "").await?;
    ensure!(b.status == StatusCode::CREATED, "{}", b.answer);
    // Every test client is 127.0.0.1: the third token is one address too many.
    let c = post_offer(&t, session, &token("c"), "").await?;
    ensure!(
        c.status == StatusCode::TOO_MANY_REQUESTS && c.code == "too_many_viewers_from_address",
        "{} {}",
        c.status,
        c.answer
    );
    // A viewer that leaves gives its slots back at once.
    let location = a.location.context("location")?;
    ensure!(delete(&t, &location, &token("a")).await? == StatusCode::OK);
    let c = post_offer(&t, session, &token("c"), "").await?;
    ensure!(c.status == StatusCode::CREATED, "{}", c.answer);
    let a = post_offer(&t, session, &token("a"), "").await?;
    ensure!(a.code == "too_many_viewers_from_address", "{}", a.answer);

    let t = spawn_relay(RelayConfig {
        max_viewers_per_session: 1,
        ..RelayConfig::default()
    })
    .await?;
    let first = post_offer(&t, session, &token("a"), "").await?;
    ensure!(first.status == StatusCode::CREATED, "{}", first.answer);
    let full = post_offer(&t, session, &token("b"), "").await?;
    ensure!(
        full.status == StatusCode::SERVICE_UNAVAILABLE && full.code == "session_full",
        "{} {}",
        full.status,
        full.answer
    );
    // Another session is not affected.
    let other = post_offer(&t, "s-other", "viewer:s-other", "").await?;
    ensure!(other.status == StatusCode::CREATED, "{}", other.answer);
    Ok(())
}

#[tokio::test]
async fn rooms_are_freed_when_nothing_needs_them() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    ensure!(t.relay.room_count() == 0);

    // A watcher (the host's WebSocket channel) alone holds a room; dropping it frees it.
    let live = t.relay.publisher_live("s-watched");
    ensure!(t.relay.room_count() == 1);
    drop(live);
    eventually("the watched room is freed", || t.relay.room_count() == 0).await?;

    // A viewer that leaves frees the room too.
    let session = "s-left";
    let posted = post_offer(&t, session, &viewer_token(session), "").await?;
    ensure!(posted.status == StatusCode::CREATED, "{}", posted.answer);
    ensure!(t.relay.room_count() == 1);
    let location = posted.location.context("location")?;
    ensure!(delete(&t, &location, &viewer_token(session)).await? == StatusCode::OK);
    eventually("the left room is freed", || t.relay.room_count() == 0).await?;

    // A room with a viewer stays.
    let kept = post_offer(&t, session, &viewer_token(session), "").await?;
    ensure!(kept.status == StatusCode::CREATED, "{}", kept.answer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ensure!(t.relay.room_count() == 1, "a watched room was freed");
    Ok(())
}

#[tokio::test]
async fn turn_urls_get_short_lived_credentials_never_a_static_password() -> Result<()> {
    let secret = TurnSecret::new("a-shared-secret").map_err(anyhow::Error::msg)?;
    let ttl = Duration::from_secs(600);
    let t = spawn_relay(RelayConfig {
        ice_servers: vec![IceServer {
            urls: vec![
                "stun:stun.example.org:3478".into(),
                "turn:turn.example.org:3478?transport=udp".into(),
            ],
        }],
        turn: Some(TurnAuth {
            secret: secret.clone(),
            ttl,
        }),
        ..RelayConfig::default()
    })
    .await?;
    let session = "s-turn";
    let posted = post_offer(&t, session, &viewer_token(session), "").await?;
    ensure!(posted.status == StatusCode::CREATED, "{}", posted.answer);
    ensure!(
        posted.links[0] == "<stun:stun.example.org:3478>; rel=\"ice-server\"",
        "{:?}",
        posted.links
    );
    let turn = &posted.links[1];
    let field = |name: &str| -> Result<String> {
        let start = turn
            .find(&format!("{name}=\""))
            .with_context(|| format!("{name} in {turn}"))?
            + name.len()
            + 2;
        let end = turn[start..].find('"').context("closing quote")? + start;
        Ok(turn[start..end].to_owned())
    };
    let username = field("username")?;
    let (expiry, user) = username.split_once(':').context("expiry:user")?;
    let resource = posted.location.context("location")?;
    ensure!(resource.ends_with(user), "the user is the resource: {user}");
    let expiry: u64 = expiry.parse()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    ensure!(
        expiry > now && expiry <= now + ttl.as_secs() + 5,
        "expiry {expiry}, now {now}"
    );
    let expected = secret.credential(user, UNIX_EPOCH + Duration::from_secs(expiry));
    ensure!(field("credential")? == expected.credential, "{turn}");
    // Two viewers never share a credential.
    let other = post_offer(&t, session, &viewer_token(session), "").await?;
    ensure!(other.links[1] != *turn, "{:?}", other.links);

    // TURN without a secret is a configuration error, not an open relay.
    let refused = Relay::new(
        RelayConfig {
            ice_servers: vec![IceServer {
                urls: vec!["turn:turn.example.org".into()],
            }],
            ..RelayConfig::default()
        },
        t.auth.clone(),
    );
    ensure!(refused.is_err(), "TURN without a secret was accepted");
    Ok(())
}
