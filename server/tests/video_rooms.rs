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
