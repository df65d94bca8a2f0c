//! The relay holds video state (a room) only for sessions something needs:
//! a socket of an ended session, or one that has left, leaves no room behind.
//! Run inside a loopback-only namespace, like every server suite (scripts/test.sh).

use std::time::{Duration, Instant};

use anyhow::bail;
use oncolive_server::config::Config;
use oncolive_server::model::{Moderation, SessionState};
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
async fn sockets_of_ended_sessions_leave_no_relay_room() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    assert_eq!(rooms(&app), 0, "a fresh node holds no room");
    let s = app.live_session(Moderation::Post).await?;

    // A watched live session has a room: its channel follows the video state.
    let (patient, _) = app.connect_patient(s.id).await?;
    assert_eq!(rooms(&app), 1);

    // Ending the session frees it, though the patient's socket is still open.
    app.set_state(s.id, &s.expert, SessionState::Ended).await?;
    rooms_become(&app, 0).await?;

    // Staff opening the ended session later: a room only while they look, none after.
    drop(patient);
    let (moderator, snapshot) = app.connect(s.id, &s.moderator).await?;
    assert_eq!(snapshot.session.state, SessionState::Ended);
    drop(moderator);
    rooms_become(&app, 0).await?;

    // And a live session nobody watches any more is freed as well.
    let other = app.live_session(Moderation::Post).await?;
    let (socket, _) = app.connect_patient(other.id).await?;
    assert_eq!(rooms(&app), 1);
    drop(socket);
    rooms_become(&app, 0).await?;
    Ok(())
}
