//! Over real sockets and HTTP: names and texts are what they look like, a hidden question is
//! not found, and state messages never carry a `seq` below the client's. Runs on both brokers
//! (`ONCOLIVE_TEST_BROKER=redis`).

use oncolive_server::Config;
use oncolive_server::api_types::JoinRequest;
use oncolive_server::domain::Command;
use oncolive_server::model::Moderation;
use oncolive_server::protocol::{ErrorCode, ServerMsg};
use oncolive_testkit::api::refused;
use oncolive_testkit::spawn_suite_app;
use reqwest::StatusCode;

#[tokio::test]
async fn names_that_imitate_staff_or_hide_characters_are_refused_at_join() -> anyhow::Result<()> {
    let app = spawn_suite_app(Config::for_tests()).await?;
    let s = app.live_session(Moderation::Pre).await?;
    let join = format!("/api/sessions/{}/join", s.id);
    for (name, says) in [
        ("Dr. Wang", "\"dr\""),
        ("Wang (expert)", "\"expert\""),
        ("王专家", "专家"),
        ("Li\u{202E}aN", "U+202E"),
        ("Li\u{200B}Na", "U+200B"),
        ("Li\nNa", "line break"),
    ] {
        let body = JoinRequest {
            name: Some(name.into()),
        };
        let (status, err) = refused(app.post(&join, None, &body).await?).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}");
        assert_eq!(err.error.code, ErrorCode::Invalid, "{name:?}");
        assert!(
            err.error.message.contains(says),
            "{name:?}: {}",
            err.error.message
        );
    }
    // A real name passes, with its spaces tidied; an empty one is anonymous (`null`).
    let joined = app.join(s.id, Some("  Li \u{3000} Na ")).await?;
    assert_eq!(joined.name.as_deref(), Some("Li Na"));
    let (_, snapshot) = app.connect(s.id, &joined.token).await?;
    assert_eq!(snapshot.you.name.as_deref(), Some("Li Na"));
    assert_eq!(app.join(s.id, Some("   ")).await?.name, None);
    Ok(())
}

#[tokio::test]
async fn socket_texts_refuse_invisible_characters_and_hidden_questions_are_not_found()
-> anyhow::Result<()> {
    let app = spawn_suite_app(Config::for_tests()).await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut author, _) = app.connect_patient(s.id).await?;
    let (mut other, _) = app.connect_patient(s.id).await?;
    let err = author
        .refused(Command::Ask {
            text: "see file\u{202E}gpj.exe".into(),
        })
        .await?;
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(
        err.message.contains("U+202E") && err.message.contains("character 9"),
        "{}",
        err.message
    );
    // Line breaks survive in a question, as `\n`.
    let q = author.ask("First line\r\nsecond line").await?;
    assert_eq!(q.text, "First line\nsecond line");
    // Pending: another patient cannot vote on it, and is not told it exists.
    let err = other.refused(Command::Vote { question: q.id }).await?;
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = other.refused(Command::Vote { question: 999 }).await?;
    assert_eq!(err.code, ErrorCode::NotFound);
    // Its author too (votes are about the public queue); once answered, it is public but
    // takes no votes: that is a conflict.
    let err = author.refused(Command::Vote { question: q.id }).await?;
    assert_eq!(err.code, ErrorCode::NotFound);
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut expert, _) = app.connect(s.id, &s.expert).await?;
    moderator
        .ok(Command::Approve {
            question: q.id,
            text: None,
            original: false,
        })
        .await?;
    other.ok(Command::Vote { question: q.id }).await?;
    expert
        .ok(Command::Answered {
            question: q.id,
            answer: None,
        })
        .await?;
    let err = author.refused(Command::Vote { question: q.id }).await?;
    assert_eq!(err.code, ErrorCode::Conflict);
    // Taking back a vote stays possible.
    other.ok(Command::Unvote { question: q.id }).await?;
    Ok(())
}

#[tokio::test]
async fn the_first_viewers_message_carries_at_least_the_snapshots_seq() -> anyhow::Result<()> {
    let app = spawn_suite_app(Config::for_tests()).await?;
    // Taken live: the snapshot is at seq 1 or more while this node's channel, new, has
    // forwarded no event yet (it used to send viewers with seq 0).
    let s = app.live_session(Moderation::Pre).await?;
    let (mut patient, snapshot) = app.connect_patient(s.id).await?;
    assert!(snapshot.seq >= 1, "{snapshot:?}");
    let seq = patient
        .recv_until(|m| match m {
            ServerMsg::Viewers { seq, .. } => Some(*seq),
            _ => None,
        })
        .await?;
    assert!(
        seq >= snapshot.seq,
        "viewers carried seq {seq} after a snapshot at {}",
        snapshot.seq
    );
    Ok(())
}
