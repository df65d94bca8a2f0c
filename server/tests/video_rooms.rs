//! The relay holds video state (a room) only for sessions with a publisher or a
//! viewer: hub sockets read the video state from the broker and make none, and
//! an ended session's room is freed.
//! Run inside a loopback-only namespace, like every server suite (scripts/test.sh).

use std::time::{Duration, Instant};

use anyhow::bail;
use oncolive_server::config::Config;
use oncolive_server::model::{Moderation, SessionState};
use oncolive_testkit::media::{IceTimeouts, MediaClient};
use oncolive_testkit::{TestApp, spawn_app};

fn rooms(app: &TestApp) -> usize {
    app.state().relay.room_count()
}

/// Waits for the node's room count to reach `expected` (the relay frees idle
/// rooms in the background); fails after a generous deadline.
async fn rooms_become(app: &TestApp, expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while rooms(app) != expected {
        if Instant::now() > deadline {
            bail!("the node holds {} rooms, not {expected}", rooms(app));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn sockets_hold_no_relay_room_and_an_ended_session_s_video_is_freed() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    assert_eq!(rooms(&app), 0, "a fresh node holds no room");
    let s = app.live_session(Moderation::Post).await?;

    // Sockets read the video state from the broker: watching a session makes no room.
    let (patient, _) = app.connect_patient(s.id).await?;
    let (moderator, _) = app.connect(s.id, &s.moderator).await?;
    assert_eq!(rooms(&app), 0);

    // A publisher makes one; ending the session frees it, though the sockets are still open.
    let media = MediaClient::new(&app.url, reqwest::Client::new(), IceTimeouts::Short)?;
    let publisher = media.publisher(s.id, &s.expert).connect().await?;
    publisher.wait_connected().await?;
    assert_eq!(rooms(&app), 1);
    app.set_state(s.id, &s.expert, SessionState::Ended).await?;
    rooms_become(&app, 0).await?;
    drop((patient, moderator));

    // Staff opening the ended session later: no room either.
    let (moderator, snapshot) = app.connect(s.id, &s.moderator).await?;
    assert_eq!(snapshot.session.state, SessionState::Ended);
    assert_eq!(rooms(&app), 0);
    drop(moderator);
    Ok(())
}

/// The join answer carries the relay's ICE servers, TURN with a credential minted for the
/// patient, so the page gathers for WHEP without an `OPTIONS` first.
#[tokio::test]
async fn the_join_answer_names_the_ice_servers() -> anyhow::Result<()> {
    let mut config = Config::for_tests();
    config.relay.ice_servers = vec![oncolive_server::config::IceServer {
        urls: vec![
            "stun:stun.example.org:3478".into(),
            "turn:turn.example.org:3478?transport=tcp".into(),
        ],
    }];
    config.relay.turn = Some(oncolive_signaling::TurnAuth {
        secret: oncolive_signaling::TurnSecret::new("test-secret").map_err(anyhow::Error::msg)?,
        ttl: Duration::from_secs(600),
    });
    let app = spawn_app(config).await?;
    let s = app.live_session(Moderation::Post).await?;
    let joined = app.api.join(s.id, None).await?;
    let servers = &joined.ice_servers;
    if servers.len() != 2 {
        bail!("two ICE server URLs, got {servers:?}");
    }
    let (stun, turn) = (&servers[0], &servers[1]);
    if stun.urls != "stun:stun.example.org:3478" || stun.username.is_some() {
        bail!("STUN without a credential: {stun:?}");
    }
    let username = turn.username.as_deref().unwrap_or_default();
    let (expiry, user) = username.split_once(':').unwrap_or_default();
    let expiry: u64 = expiry.parse()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    if user != joined.patient_id.to_string() || !(now..=now + 601).contains(&expiry) {
        bail!("the TURN user is the patient, for the configured lifetime: {turn:?}");
    }
    if turn.credential.as_deref().is_none_or(str::is_empty) {
        bail!("no TURN credential: {turn:?}");
    }
    Ok(())
}
