//! Sessions with thousands of questions open for every role: the snapshot comes in bounded
//! parts, no socket is closed as too slow, and events that happen meanwhile are not lost. The
//! same tests run on both brokers (`ONCOLIVE_TEST_BROKER=redis`).

use std::collections::BTreeMap;

use futures_util::StreamExt;
use futures_util::future::join_all;
use oncolive_server::config::Config;
use oncolive_server::domain::{Actor, Command};
use oncolive_server::model::{Moderation, Question, QuestionId, QuestionStatus, Role, SessionId};
use oncolive_server::protocol::{ServerMsg, Snapshot};
use oncolive_testkit::hub::{SocketOptions, connect_socket};
use oncolive_testkit::{TestApp, spawn_suite_app};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Small parts, so that a few thousand questions make many of them.
const PART_BYTES: usize = 2048;
const QUESTIONS: usize = 3000;

async fn spawn_app() -> anyhow::Result<TestApp> {
    let mut config = Config::for_tests();
    config.snapshot_part_bytes = PART_BYTES;
    spawn_suite_app(config).await
}

fn patient() -> Actor {
    Actor {
        id: Uuid::now_v7(),
        role: Role::Patient,
        name: Some("Ana".into()),
        links_version: 0,
        consented_at: Some(time::OffsetDateTime::now_utc()),
    }
}

fn moderator() -> Actor {
    Actor {
        id: Uuid::now_v7(),
        role: Role::Moderator,
        name: None,
        links_version: 0,
        consented_at: Some(time::OffsetDateTime::now_utc()),
    }
}

/// Stores `n` questions through the broker (as many patients would, without their sockets and
/// rate limits), all pending; returns their ids.
async fn ask_many(app: &TestApp, session: SessionId, n: usize) -> anyhow::Result<Vec<QuestionId>> {
    let broker = app.state().broker.clone();
    let mut ids = Vec::with_capacity(n);
    // A thousand at a time: many commands per commit, without one huge burst.
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let asks = chunk.iter().map(|i| {
            let broker = broker.clone();
            async move {
                let text = format!(
                    "Question {i}: after a polyp was removed, when is the next colonoscopy due?"
                );
                broker
                    .apply(session, &patient(), Command::Ask { text })
                    .await
            }
        });
        for ack in join_all(asks).await {
            match ack?.reply {
                oncolive_server::domain::Reply::Question(q) => ids.push(q.id),
                other => anyhow::bail!("an ask replied {other:?}"),
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

async fn approve_all(app: &TestApp, session: SessionId, ids: &[QuestionId]) -> anyhow::Result<u64> {
    let broker = app.state().broker.clone();
    let m = moderator();
    let approvals = ids.iter().map(|&question| {
        broker.apply(
            session,
            &m,
            Command::Approve {
                question,
                text: None,
                original: false,
            },
        )
    });
    let mut head = 0;
    for ack in join_all(approvals).await {
        head = head.max(ack?.seq);
    }
    Ok(head)
}

#[tokio::test]
async fn a_session_with_thousands_of_questions_opens_for_every_role() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let ids = ask_many(&app, s.id, QUESTIONS).await?;
    approve_all(&app, s.id, &ids[..1000]).await?;
    // A patient with a pending question of their own sees it besides the public ones.
    let joined = app.join(s.id, Some("Ming")).await?;
    let (mut own, _) = app.connect(s.id, &joined.token).await?;
    let mine = own.ask("Is a FIT test enough at 45?").await?;

    for (role, token) in [
        ("moderator", s.moderator.as_str()),
        ("expert", s.expert.as_str()),
        ("admin", app.admin.as_str()),
    ] {
        let (mut client, snapshot) = app.connect(s.id, token).await?;
        assert_eq!(
            snapshot.questions.len(),
            QUESTIONS + 1,
            "{role} sees every question"
        );
        assert!(!snapshot.more);
        let pending = snapshot
            .questions
            .iter()
            .filter(|q| q.status == QuestionStatus::Pending)
            .count();
        assert_eq!(pending, QUESTIONS - 1000 + 1, "{role}");
        // Still connected and answering: no 4000 after the snapshot.
        client.ping().await?;
    }
    let (mut client, snapshot) = app.connect(s.id, &joined.token).await?;
    assert_eq!(
        snapshot.questions.len(),
        1001,
        "the public questions and their own"
    );
    assert!(snapshot.questions.iter().any(|q| q.id == mine.id));
    client.ping().await?;
    let (mut anyone, snapshot) = app.connect_patient(s.id).await?;
    assert_eq!(snapshot.questions.len(), 1000);
    assert!(
        snapshot
            .questions
            .iter()
            .all(|q| q.status == QuestionStatus::Approved && q.author_id.is_none()),
        "a patient sees public copies only"
    );
    anyone.ping().await?;
    own.ping().await?;
    Ok(())
}

#[tokio::test]
async fn a_large_snapshot_goes_out_in_parts_within_the_configured_size() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    ask_many(&app, s.id, QUESTIONS).await?;
    let mut ws = connect_socket(
        &app.ws_url(s.id, &s.moderator, None),
        SocketOptions::default(),
    )
    .await?;
    let mut frames = Vec::new();
    loop {
        let Some(frame) = ws.next().await else {
            anyhow::bail!("socket ended within the snapshot");
        };
        let Message::Text(text) = frame? else {
            continue;
        };
        let msg: ServerMsg = serde_json::from_str(text.as_str())?;
        let more = match &msg {
            ServerMsg::Snapshot(s) => s.more,
            ServerMsg::SnapshotPart(p) => p.more,
            other => anyhow::bail!("{other:?} within the snapshot"),
        };
        frames.push((text.len(), msg));
        if !more {
            break;
        }
    }
    assert!(frames.len() > 50, "{} frames", frames.len());
    let mut whole: Option<Snapshot> = None;
    for (i, (len, msg)) in frames.into_iter().enumerate() {
        match msg {
            ServerMsg::Snapshot(s) if i == 0 => {
                // The session, `you` and the counts come on top of the questions.
                assert!(len <= PART_BYTES + 2048, "the snapshot is {len} bytes");
                whole = Some(s);
            }
            ServerMsg::SnapshotPart(p) if i > 0 => {
                assert!(len <= PART_BYTES + 100, "part {i} is {len} bytes");
                let w = whole.as_mut().expect("the snapshot came first");
                assert_eq!(p.seq, w.seq);
                w.absorb(p);
            }
            other => anyhow::bail!("message {i}: {other:?}"),
        }
    }
    let whole = whole.expect("a snapshot");
    let ids: Vec<QuestionId> = whole.questions.iter().map(|q| q.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted,
        (1..=QUESTIONS as u64).collect::<Vec<_>>(),
        "each question once"
    );
    Ok(())
}

/// The next server message on a raw socket.
async fn next_msg(ws: &mut oncolive_testkit::hub::Socket) -> anyhow::Result<ServerMsg> {
    loop {
        let Some(frame) = ws.next().await else {
            anyhow::bail!("socket ended");
        };
        if let Message::Text(text) = frame? {
            return Ok(serde_json::from_str(text.as_str())?);
        }
    }
}

#[tokio::test]
async fn events_during_a_large_snapshot_follow_it_and_none_is_lost() -> anyhow::Result<()> {
    // Two log entries each: within the socket's queue while the client reads the parts.
    const APPROVED: usize = 300;
    let app = spawn_app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let ids = ask_many(&app, s.id, QUESTIONS).await?;
    // A small receive buffer: the server is still writing parts when the events come.
    let options = SocketOptions {
        recv_buffer: Some(4096),
        ..SocketOptions::default()
    };
    let mut ws = connect_socket(&app.ws_url(s.id, &s.moderator, None), options).await?;
    let ServerMsg::Snapshot(mut snapshot) = next_msg(&mut ws).await? else {
        anyhow::bail!("the first message is not a snapshot");
    };
    assert!(snapshot.more);
    // The snapshot was read before its first part went out: every approval from here on is
    // newer than it.
    let approving = {
        let batch = ids[..APPROVED].to_vec();
        let broker = app.state().broker.clone();
        let session = s.id;
        tokio::spawn(async move {
            let m = moderator();
            let approvals = batch.into_iter().map(|question| {
                broker.apply(
                    session,
                    &m,
                    Command::Approve {
                        question,
                        text: None,
                        original: false,
                    },
                )
            });
            let mut head = 0;
            for ack in join_all(approvals).await {
                head = head.max(ack?.seq);
            }
            anyhow::Ok(head)
        })
    };
    let head = approving.await??;
    while snapshot.more {
        match next_msg(&mut ws).await? {
            ServerMsg::SnapshotPart(part) => snapshot.absorb(part),
            other => anyhow::bail!("{other:?} between the parts of a snapshot"),
        }
    }
    let mut view: BTreeMap<QuestionId, Question> =
        snapshot.questions.into_iter().map(|q| (q.id, q)).collect();
    let mut seq = snapshot.seq;
    while seq < head {
        let msg = next_msg(&mut ws).await?;
        if let Some(at) = msg.event_seq() {
            // Each approval is logged for the public and for staff: a moderator gets every
            // other seq, in order, none the snapshot had.
            assert_eq!(
                at,
                seq + 2,
                "events in order, none missing, none the snapshot had"
            );
            seq = at;
        }
        if let ServerMsg::Question { question, .. } = msg {
            view.insert(question.id, question);
        }
    }
    let approved = view
        .values()
        .filter(|q| q.status == QuestionStatus::Approved)
        .count();
    assert_eq!(approved, APPROVED, "snapshot + events = every approval");
    let (mut fresh_client, fresh) = app.connect(s.id, &s.moderator).await?;
    // Public events carry the public copy (no `author_id`), so compare what every copy has.
    let shown = |q: &Question| (q.id, q.status, q.text.clone(), q.votes);
    let built: Vec<_> = view.values().map(shown).collect();
    let mut fresh: Vec<_> = fresh.questions.iter().map(shown).collect();
    fresh.sort_by_key(|q| q.0);
    assert_eq!(built, fresh, "what the client built is the session");
    fresh_client.ping().await?;
    Ok(())
}
