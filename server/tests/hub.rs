//! The Q&A hub's behaviour, over real sockets. The same tests run against the in-memory broker
//! and, with `ONCOLIVE_TEST_BROKER=redis`, against Redis.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use oncolive_server::api_types::{JoinRequest, StateRequest};
use oncolive_server::config::{Config, Limits};
use oncolive_server::domain::{Command, SessionChanges};
use oncolive_server::model::{Moderation, QuestionId, QuestionStatus, Role, SessionState};
use oncolive_server::protocol::{ClientMsg, CloseCode, ErrorCode, ServerMsg, VideoState};
use oncolive_testkit::api::refused;
use oncolive_testkit::hub::{HubClient, SocketOptions, connect_socket, frame};
use oncolive_testkit::{TestApp, spawn_suite_app};
use reqwest::StatusCode;
use serde_json::json;
use time::macros::datetime;
use tokio_tungstenite::tungstenite::Message;

async fn spawn_app() -> anyhow::Result<TestApp> {
    spawn_suite_app(Config::for_tests()).await
}

/// `Config::for_tests()` with some of its limits changed.
fn with_limits(limits: impl FnOnce(&mut Limits)) -> Config {
    let mut config = Config::for_tests();
    limits(&mut config.limits);
    config
}

fn close_code(code: CloseCode) -> Option<u16> {
    Some(code as u16)
}

#[tokio::test]
async fn a_question_goes_from_patient_to_moderator_to_everyone_to_the_expert() -> anyhow::Result<()>
{
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut expert, _) = app.connect(s.id, &s.expert).await?;
    let alice = app.join(s.id, Some("Alice")).await?.token;
    let bob = app.patient(s.id).await?;
    let (mut alice_ws, snap) = app.connect(s.id, &alice).await?;
    assert_eq!(snap.video, VideoState::Waiting, "nobody publishes yet");
    assert_eq!(snap.you.role, Role::Patient);
    assert_eq!(snap.you.name.as_deref(), Some("Alice"));
    let (mut bob_ws, _) = app.connect(s.id, &bob).await?;

    // The expert goes live; everyone sees it.
    expert
        .ok(Command::SetState {
            state: SessionState::Live,
        })
        .await?;
    for c in [&mut moderator, &mut alice_ws, &mut bob_ws] {
        let ev = c.recv_session(|_| true).await?;
        assert_eq!(ev.state, SessionState::Live);
    }

    // Alice asks; only she and staff see the pending question.
    let asked = alice_ws
        .ask("  Should I get a colonoscopy at 45? My number is 555-1234  ")
        .await?;
    assert_eq!(asked.status, QuestionStatus::Pending);
    assert_eq!(
        asked.text,
        "Should I get a colonoscopy at 45? My number is 555-1234"
    );
    let first = asked.id;
    let seen = moderator.recv_question(|q| q.id == first).await?;
    assert_eq!(seen.status, QuestionStatus::Pending);
    assert_eq!(seen.author.as_deref(), Some("Alice"));

    let second = alice_ws.ask("Buy cheap pills here").await?.id;
    moderator.recv_question(|q| q.id == second).await?;

    // The moderator edits out the phone number while approving, and rejects the spam.
    let approved = moderator
        .ok_question(Command::Approve {
            question: first,
            text: Some("Should I get a colonoscopy at 45?".into()),
            original: false,
        })
        .await?;
    assert!(approved.edited);
    let rejected = moderator
        .ok_question(Command::Reject {
            question: second,
            reason: Some("Advertising".into()),
            code: None,
        })
        .await?;
    assert_eq!(rejected.reason.as_deref(), Some("Advertising"));

    let public = bob_ws.recv_question(|q| q.id == first).await?;
    assert_eq!(public.status, QuestionStatus::Approved);
    assert_eq!(public.text, "Should I get a colonoscopy at 45?");
    assert!(
        public.author_id.is_none(),
        "public view hides the author id"
    );
    let mine = alice_ws
        .recv_question(|q| q.id == second && q.status == QuestionStatus::Rejected)
        .await?;
    assert_eq!(mine.status, QuestionStatus::Rejected);
    assert_eq!(mine.reason.as_deref(), Some("Advertising"));

    // Bob votes (twice: counted once); the coalesced count reaches Alice.
    let v = bob_ws.ok(Command::Vote { question: first }).await?;
    assert_eq!(v.voted, Some(true));
    bob_ws.ok(Command::Vote { question: first }).await?;
    let votes = alice_ws
        .recv_votes(|v| v.iter().any(|c| c.id == first))
        .await?;
    assert_eq!(votes[0].votes, 1);

    // The expert answers.
    expert.ok(Command::Answering { question: first }).await?;
    let now = bob_ws
        .recv_question(|q| q.status == QuestionStatus::Answering)
        .await?;
    assert_eq!(now.id, first);
    expert
        .ok(Command::Answered {
            question: first,
            answer: Some("From 45, yes: talk to your doctor.".into()),
        })
        .await?;
    let done = alice_ws
        .recv_question(|q| q.status == QuestionStatus::Answered)
        .await?;
    assert_eq!(
        done.answer.as_deref(),
        Some("From 45, yes: talk to your doctor.")
    );
    assert!(done.answered_at.is_some());

    // Bob never saw the rejected question: a fresh snapshot shows only the public one.
    let (_, snap) = app.connect(s.id, &bob).await?;
    let ids: Vec<QuestionId> = snap.questions.iter().map(|q| q.id).collect();
    assert_eq!(ids, vec![first]);
    assert_eq!(snap.my_votes, vec![first]);
    // Alice's snapshot keeps her rejected question, with the reason.
    let (_, snap) = app.connect(s.id, &alice).await?;
    let rejected = snap
        .questions
        .iter()
        .find(|q| q.id == second)
        .context("author sees her rejected question")?;
    assert_eq!(rejected.reason.as_deref(), Some("Advertising"));

    // Ending the session: everyone sees it, nothing changes afterwards.
    expert
        .ok(Command::SetState {
            state: SessionState::Ended,
        })
        .await?;
    let ended = bob_ws
        .recv_session(|s| s.state == SessionState::Ended)
        .await?;
    assert!(ended.ended_at.is_some());
    let refused = alice_ws
        .refused(Command::Ask {
            text: "too late?".into(),
        })
        .await?;
    assert_eq!(refused.code, ErrorCode::SessionEnded);
    Ok(())
}

#[tokio::test]
async fn post_moderated_questions_are_public_at_once_and_removal_reaches_everyone()
-> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Post).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let p1 = app.patient(s.id).await?;
    let p2 = app.patient(s.id).await?;
    let (mut a, _) = app.connect(s.id, &p1).await?;
    let (mut b, _) = app.connect(s.id, &p2).await?;
    let id = a.ask("Is HPV vaccination useful after 26?").await?.id;
    let seen = b.recv_question(|q| q.id == id).await?;
    assert_eq!(seen.status, QuestionStatus::Approved);
    moderator
        .ok(Command::Reject {
            question: id,
            reason: Some("Duplicate".into()),
            code: None,
        })
        .await?;
    let removed = b.recv_removed().await?;
    assert_eq!(removed, id);
    let own = a
        .recv_question(|q| q.status == QuestionStatus::Rejected)
        .await?;
    assert_eq!(own.reason.as_deref(), Some("Duplicate"));
    Ok(())
}

#[tokio::test]
async fn a_socket_s_commands_are_stored_and_answered_in_the_order_sent() -> anyhow::Result<()> {
    let app = spawn_suite_app(with_limits(|l| {
        l.asks_per_minute = 100;
        l.asks_per_minute_per_address = 100;
    }))
    .await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut patient, _) = app.connect_patient(s.id).await?;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(
            patient
                .ask(format!("Question {n}: how often should I be screened?"))
                .await?
                .id,
        );
    }
    // Sent without waiting for any reply: a pin is refused on a question not yet approved, so
    // every pin acknowledged shows its approve was stored first.
    let mut sent = Vec::new();
    for &question in &ids {
        sent.push(
            moderator
                .submit(Command::Approve {
                    question,
                    text: None,
                    original: false,
                })
                .await?,
        );
        sent.push(
            moderator
                .submit(Command::Pin {
                    question,
                    pinned: true,
                })
                .await?,
        );
    }
    let mut answered = Vec::new();
    while answered.len() < sent.len() {
        match moderator.recv().await? {
            ServerMsg::Ack(ack) => answered.push(ack.req.context("an ack without req")?),
            ServerMsg::Error(err) => bail!("refused: {err:?}"),
            _ => {}
        }
    }
    assert_eq!(
        answered, sent,
        "replies in the order the commands were sent"
    );
    let (_, snap) = app.connect_patient(s.id).await?;
    let pinned = snap.questions.iter().filter(|q| q.pinned).count();
    assert_eq!(pinned, ids.len());
    Ok(())
}

#[tokio::test]
async fn merging_moves_votes_and_pinning_reorders_the_queue() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Post).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let mut patients = Vec::new();
    for _ in 0..3 {
        patients.push(app.connect_patient(s.id).await?.0);
    }
    let a = patients[0].ask("Does smoking cause lung cancer?").await?.id;
    let b = patients[1]
        .ask("Is smoking a cause of lung cancer?")
        .await?
        .id;
    let c = patients[2].ask("What is a nodule?").await?.id;
    patients[0].ok(Command::Vote { question: a }).await?;
    patients[1].ok(Command::Vote { question: b }).await?;
    patients[2].ok(Command::Vote { question: b }).await?;
    patients[2].ok(Command::Vote { question: a }).await?;
    let merged = moderator
        .ok_question(Command::Merge {
            question: b,
            into: a,
        })
        .await?;
    assert_eq!(merged.status, QuestionStatus::Merged);
    assert_eq!(merged.merged_into, Some(a));
    let target = patients[0]
        .recv_question(|q| q.id == a && q.votes == 3)
        .await?;
    assert_eq!(target.status, QuestionStatus::Approved);
    moderator
        .ok(Command::Pin {
            question: c,
            pinned: true,
        })
        .await?;
    let (_, snap) = app.connect_patient(s.id).await?;
    let order: Vec<QuestionId> = snap
        .questions
        .iter()
        .filter(|q| q.status == QuestionStatus::Approved)
        .map(|q| q.id)
        .collect();
    assert_eq!(order, vec![c, a], "pinned first, then by votes");
    // Taking back a vote.
    let unvote = patients[0].ok(Command::Unvote { question: a }).await?;
    assert_eq!(unvote.voted, Some(false));
    patients[1]
        .recv_votes(|v| v.iter().any(|x| x.id == a && x.votes == 2))
        .await?;
    Ok(())
}

#[tokio::test]
async fn every_role_does_only_its_own_work() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let other = app.create_session(Moderation::Pre).await?;
    let patient = app.patient(s.id).await?;
    let (mut p, _) = app.connect(s.id, &patient).await?;
    let (mut m, _) = app.connect(s.id, &s.moderator).await?;
    let (mut e, _) = app.connect(s.id, &s.expert).await?;
    let id = p.ask("q").await?.id;

    for (who, command) in [
        (
            "p",
            Command::Approve {
                question: id,
                text: None,
                original: false,
            },
        ),
        (
            "p",
            Command::SetState {
                state: SessionState::Live,
            },
        ),
        ("m", Command::Ask { text: "q".into() }),
        ("m", Command::Answering { question: id }),
        (
            "e",
            Command::Reject {
                question: id,
                reason: Some("x".into()),
                code: None,
            },
        ),
        ("e", Command::Vote { question: id }),
    ] {
        let client = match who {
            "p" => &mut p,
            "m" => &mut m,
            _ => &mut e,
        };
        let sent = format!("{command:?}");
        let reply = client.refused(command).await?;
        assert_eq!(reply.code, ErrorCode::Forbidden, "{sent} gave {reply:?}");
    }

    // A token of one session is refused at another's socket and HTTP endpoints.
    let Err(err) = HubClient::connect(&app.ws_url(other.id, &s.expert, None)).await else {
        bail!("a token of another session was accepted");
    };
    assert!(format!("{err:#}").contains("403"), "{err:#}");
    let live = StateRequest {
        state: SessionState::Live,
    };
    let res = app
        .post(
            &format!("/api/sessions/{}/state", other.id),
            Some(&s.expert),
            &live,
        )
        .await?;
    let (status, body) = refused(res).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body.error.code, ErrorCode::Forbidden);

    // No token, a bad token: 401 with a JSON body.
    for token in ["", "not-a-token"] {
        let Err(err) = HubClient::connect(&app.ws_url(s.id, token, None)).await else {
            bail!("the socket accepted token {token:?}");
        };
        assert!(format!("{err:#}").contains("401"), "{err:#}");
    }
    // The body is not even read without a token.
    let res = app.post("/api/sessions", None, &json!({})).await?;
    let (status, body) = refused(res).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body.error.code, ErrorCode::Unauthorized);

    // Only admins create sessions or read links; a moderator cannot change the state.
    let new = oncolive_server::model::NewSession {
        title: "x".into(),
        topic: String::new(),
        expert_name: "y".into(),
        scheduled_start: datetime!(2026-12-01 00:00 UTC),
        moderation: Moderation::default(),
        expert_profile: None,
        record: None,
        videos: Vec::new(),
    };
    for token in [&s.expert, &s.moderator, &patient] {
        let res = app.post("/api/sessions", Some(token), &new).await?;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = app
            .get(&format!("/api/sessions/{}/links", s.id), Some(token))
            .await?;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let state_path = format!("/api/sessions/{}/state", s.id);
    let res = app.post(&state_path, Some(&s.moderator), &live).await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The expert may, over HTTP too; going back is a conflict.
    app.set_state(s.id, &s.expert, SessionState::Live).await?;
    let res = app
        .post(
            &state_path,
            Some(&s.expert),
            &StateRequest {
                state: SessionState::Scheduled,
            },
        )
        .await?;
    assert_eq!(
        res.status(),
        StatusCode::CONFLICT,
        "a session never goes back to scheduled"
    );
    // An admin acts anywhere.
    let (mut admin, _) = app.connect(other.id, &app.admin).await?;
    admin
        .ok(Command::SetState {
            state: SessionState::Live,
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_socket_stays_usable() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (mut c, _) = app.connect_patient(s.id).await?;
    c.consent().await?;

    let ask = |req: &str, text: String| frame(&ClientMsg::command(req, Command::Ask { text }));
    let cases: Vec<(Message, ErrorCode, Option<&str>)> = vec![
        (
            Message::Text("{not json".into()),
            ErrorCode::BadRequest,
            None,
        ),
        (
            Message::Text(r#"{"type":"fly","req":"a1"}"#.into()),
            ErrorCode::BadRequest,
            Some("a1"),
        ),
        (
            Message::Text(r#"{"type":"vote","req":"a2","question":"seven"}"#.into()),
            ErrorCode::BadRequest,
            Some("a2"),
        ),
        (
            Message::Text(r#"[1,2,3]"#.into()),
            ErrorCode::BadRequest,
            None,
        ),
        (
            Message::Binary(vec![1, 2, 3].into()),
            ErrorCode::BadRequest,
            None,
        ),
        (ask("a3", "x".repeat(501))?, ErrorCode::Invalid, Some("a3")),
        (ask("a4", "   ".into())?, ErrorCode::Invalid, Some("a4")),
        (
            ask("a5", "y".repeat(70_000))?,
            ErrorCode::TooLarge,
            // Refused by its size before it is parsed: its `req` is not read.
            None,
        ),
        (
            frame(&ClientMsg::command("a6", Command::Vote { question: 999 }))?,
            ErrorCode::NotFound,
            Some("a6"),
        ),
    ];
    for (msg, code, req) in cases {
        c.send_raw(msg).await?;
        let reply = c.recv_error().await?;
        assert_eq!(reply.code, code, "{reply:?}");
        assert_eq!(reply.req.as_deref(), req, "{reply:?}");
        c.ping().await.context("socket still usable")?;
    }
    // 500 Chinese characters are allowed: the limit counts characters, not bytes.
    c.ask("癌".repeat(500)).await?;
    Ok(())
}

#[tokio::test]
async fn a_frame_over_one_mebibyte_closes_with_1009() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (mut c, _) = app.connect_patient(s.id).await?;
    c.send_raw(Message::Text("z".repeat(1_100_000).into()))
        .await?;
    assert_eq!(c.closed().await?, close_code(CloseCode::TooBig));
    Ok(())
}

#[tokio::test]
async fn a_flood_closes_the_socket_with_4008_and_questions_are_rate_limited() -> anyhow::Result<()>
{
    let app = spawn_suite_app(with_limits(|l| {
        l.messages_per_second = 5;
        l.asks_per_minute = 3;
    }))
    .await?;
    let s = app.create_session(Moderation::Pre).await?;
    let token = app.patient(s.id).await?;
    let (mut c, _) = app.connect(s.id, &token).await?;
    for i in 0..3 {
        c.ask(format!("question {i}")).await?;
    }
    let limited = c
        .refused(Command::Ask {
            text: "one too many".into(),
        })
        .await?;
    assert_eq!(limited.code, ErrorCode::RateLimited);
    assert!(limited.retry_after_ms.is_some());
    // Reconnecting does not reset the limit: it is per patient.
    let (mut again, _) = app.connect(s.id, &token).await?;
    let limited = again
        .refused(Command::Ask {
            text: "still too many".into(),
        })
        .await?;
    assert_eq!(limited.code, ErrorCode::RateLimited);

    for _ in 0..200 {
        c.send_ping().await?;
    }
    let mut saw_limit = false;
    let code = c
        .until_closed(|m| {
            saw_limit |= matches!(m, ServerMsg::Error(e) if e.code == ErrorCode::RateLimited);
        })
        .await?;
    assert!(saw_limit, "rate-limit errors come before the close");
    assert_eq!(code, close_code(CloseCode::Flood));
    Ok(())
}

#[tokio::test]
async fn a_client_that_reconnects_mid_burst_gets_each_missed_event_once_in_order()
-> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut asker_ws, _) = app.connect_patient(s.id).await?;
    // Many patients asking: a handful of questions each, within the per-patient limit.
    let mut ids = Vec::new();
    for i in 0..60 {
        if i % 5 == 0 && i > 0 {
            asker_ws = app.connect_patient(s.id).await?.0;
        }
        ids.push(asker_ws.ask(format!("question number {i}")).await?.id);
    }
    let watcher = app.patient(s.id).await?;
    let (mut w, _) = app.connect(s.id, &watcher).await?;

    // Approve in a burst from another task while the watcher drops out after ten events.
    let burst = tokio::spawn({
        let ids = ids.clone();
        async move {
            for id in ids {
                moderator
                    .ok(Command::Approve {
                        question: id,
                        text: None,
                        original: false,
                    })
                    .await?;
            }
            anyhow::Ok(moderator)
        }
    });
    let mut approved: Vec<QuestionId> = Vec::new();
    while approved.len() < 10 {
        approved.push(w.recv_question(|_| true).await?.id);
    }
    let since = w.seq;
    drop(w);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut w = HubClient::connect(&app.ws_url(s.id, &watcher, Some(since))).await?;
    match w.recv().await? {
        ServerMsg::Resumed { since: from, .. } => assert_eq!(from, since),
        other => bail!("expected resumed, got {other:?}"),
    }
    while approved.len() < ids.len() {
        let ev = w.recv_question(|_| true).await?;
        assert_eq!(ev.status, QuestionStatus::Approved);
        approved.push(ev.id);
    }
    burst.await??;
    let mut counts: HashMap<QuestionId, usize> = HashMap::new();
    for id in &approved {
        *counts.entry(*id).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "each approval exactly once"
    );
    assert_eq!(approved, ids, "in the order they were approved");
    Ok(())
}

#[tokio::test]
async fn a_client_too_far_behind_gets_a_snapshot() -> anyhow::Result<()> {
    let app = spawn_suite_app(Config {
        history: 5,
        ..Config::for_tests()
    })
    .await?;
    let s = app.create_session(Moderation::Post).await?;
    let (mut m, _) = app.connect(s.id, &s.moderator).await?;
    let p = app.patient(s.id).await?;
    let (mut c, _) = app.connect(s.id, &p).await?;
    let id = c.ask("first").await?.id;
    for i in 0..10 {
        m.ok(Command::Edit {
            question: id,
            text: format!("edit {i}"),
        })
        .await?;
    }
    let mut again = HubClient::connect(&app.ws_url(s.id, &p, Some(1))).await?;
    let first = again.snapshot().await?;
    assert_eq!(first.questions[0].text, "edit 9");
    // `since` ahead of the head also gets a snapshot.
    let mut ahead = HubClient::connect(&app.ws_url(s.id, &p, Some(1_000_000))).await?;
    ahead.snapshot().await?;
    Ok(())
}

#[tokio::test]
async fn a_stalled_client_is_dropped_while_the_others_carry_on() -> anyhow::Result<()> {
    let app = spawn_suite_app(with_limits(|l| l.socket_queue = 256)).await?;
    let s = app.create_session(Moderation::Post).await?;
    let (mut asker, _) = app.connect_patient(s.id).await?;
    let id = asker.ask("Screening intervals?").await?.id;

    // A client with a tiny receive buffer that never reads.
    let stalled_token = app.patient(s.id).await?;
    let options = SocketOptions {
        recv_buffer: Some(4096),
        ..SocketOptions::default()
    };
    let stalled = connect_socket(&app.ws_url(s.id, &stalled_token, None), options).await?;
    let mut stalled = HubClient::from_socket(stalled);

    let (mut healthy, _) = app.connect_patient(s.id).await?;
    let (mut m, _) = app.connect(s.id, &s.moderator).await?;
    // The healthy client reads everything, checking each edit arrives once and in order.
    let reader = tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            let text = healthy.recv_question(|_| true).await?.text;
            if text == "done" {
                return anyhow::Ok(next);
            }
            assert!(
                text.ends_with(&format!("#{next}")),
                "edit {next} expected, got {}",
                &text[text.len() - 8..]
            );
            next += 1;
        }
    });
    // Edit until the stalled socket has been dropped: its kernel buffers (up to 4 MiB here)
    // fill first, then the server gives up on it after its send timeout or once it falls a
    // queue behind. Bounded in count and time.
    let text = "长".repeat(480);
    let mut edits = 0u64;
    let started = std::time::Instant::now();
    let dropped = loop {
        m.ok(Command::Edit {
            question: id,
            text: format!("{text}#{edits}"),
        })
        .await?;
        edits += 1;
        if edits > 4000 {
            // The buffers are full by now; go on slowly until the server's verdict.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if edits.is_multiple_of(100) {
            let metrics = app.metrics().await?;
            if metrics
                .lines()
                .any(|l| l.starts_with("oncolive_ws_slow_disconnects_total") && !l.ends_with(" 0"))
            {
                break true;
            }
        }
        if edits >= 20_000 || started.elapsed() > Duration::from_secs(60) {
            break false;
        }
    };
    m.ok(Command::Edit {
        question: id,
        text: "done".into(),
    })
    .await?;
    assert!(dropped, "the stalled client was never dropped");
    assert_eq!(reader.await??, edits, "the healthy client got every edit");
    // What the stalled client was sent before it was dropped ends with a 4000 close.
    let code = stalled
        .closed()
        .await
        .context("the stalled client's socket stayed open")?;
    assert!(
        code.is_none() || code == close_code(CloseCode::TooSlow),
        "closed as too slow, got {code:?}"
    );
    Ok(())
}

#[tokio::test]
async fn everyone_sees_the_viewer_count() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(app.connect_patient(s.id).await?.0);
    }
    let viewers = |n: u64| {
        move |m: &ServerMsg| {
            matches!(m, ServerMsg::Viewers { count, .. } if *count == n).then_some(())
        }
    };
    // A `viewers` message carries a `seq` (the type requires it).
    clients[0].recv_until(viewers(3)).await?;
    assert_eq!(app.session(s.id).await?.viewers, 3);
    // Staff are not the audience: the expert and a moderator joining change nothing.
    let (mut expert, _) = app.connect(s.id, &s.expert).await?;
    let (_moderator, _) = app.connect(s.id, &s.moderator).await?;
    clients.pop();
    // The next count after the staff joined is the patients' alone.
    expert.recv_until(viewers(2)).await?;
    clients[0].recv_until(viewers(2)).await?;
    assert_eq!(app.session(s.id).await?.viewers, 2);
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() -> anyhow::Result<()> {
    let mut app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (mut c, _) = app.connect_patient(s.id).await?;
    let closing = tokio::spawn(async move { c.closed().await });
    app.shutdown().await?;
    assert_eq!(closing.await??, close_code(CloseCode::GoingAway));
    Ok(())
}

#[tokio::test]
async fn sessions_are_listed_and_shown_and_bad_bodies_are_refused() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    assert!(s.created.links.expert.contains("#token="));
    assert!(s.created.links.patient.ends_with(&s.id.to_string()));
    let list = app.sessions().await?;
    assert!(
        list.iter().any(|x| x.id == s.id),
        "{} not in {list:?}",
        s.id
    );
    let missing = app
        .get("/api/sessions/0193a4f2-6c1e-7b3a-9f2e-5d4c3b2a1908", None)
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Malformed bodies are `bad_request`; a well-formed one with a value out of range is
    // `invalid`, as on the socket.
    for (body, code) in [
        (
            json!({"title": "", "expert_name": "x", "scheduled_start": "2026-12-01T00:00:00Z"}),
            ErrorCode::Invalid,
        ),
        (
            json!({"title": "x", "expert_name": "x", "scheduled_start": "tomorrow"}),
            ErrorCode::BadRequest,
        ),
        (
            json!({"title": "x", "expert_name": "x", "scheduled_start": "2026-12-01T00:00:00Z", "moderation": "none"}),
            ErrorCode::BadRequest,
        ),
    ] {
        let res = app.post("/api/sessions", Some(&app.admin), &body).await?;
        let (status, err) = refused(res).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err.error.code, code, "{body}");
    }
    let qr = app
        .get(&format!("/api/sessions/{}/qr.svg", s.id), None)
        .await?;
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");
    assert!(qr.text().await?.contains("<svg"));
    let health = app.get("/healthz", None).await?;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get("/readyz", None).await?;
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = app.metrics().await?;
    assert!(metrics.contains("oncolive_sessions"), "{metrics}");
    assert!(
        metrics.contains("oncolive_questions_total") || metrics.contains("oncolive_ws_connections")
    );
    Ok(())
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_with_4001() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (_, short) =
        app.state()
            .keys
            .issue(Role::Moderator, Some(s.id), None, Duration::from_secs(1));
    let (mut c, _) = app.connect(s.id, &short).await?;
    assert_eq!(c.closed().await?, close_code(CloseCode::TokenExpired));
    Ok(())
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_4009() -> anyhow::Result<()> {
    let app = spawn_suite_app(Config {
        ping_interval: Duration::from_secs(1),
        ..Config::for_tests()
    })
    .await?;
    let s = app.create_session(Moderation::Pre).await?;
    let (mut c, _) = app.connect_patient(s.id).await?;
    // Not reading means not answering pings; after 2.4 intervals the server gives up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(c.closed().await?, close_code(CloseCode::Idle));
    Ok(())
}

#[tokio::test]
async fn joins_are_limited_per_client_address_and_the_proxy_address_can_be_trusted()
-> anyhow::Result<()> {
    let app = spawn_suite_app(with_limits(|l| {
        l.joins_per_second = 1;
        l.trust_forwarded_for = true;
    }))
    .await?;
    let s = app.create_session(Moderation::Pre).await?;
    let path = format!("/api/sessions/{}/join", s.id);
    let join_from = |ip: &'static str| {
        app.request(reqwest::Method::POST, &path, None)
            .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
            .json(&JoinRequest::default())
            .send()
    };
    // A burst of five is allowed, then 429 with Retry-After.
    for _ in 0..5 {
        assert_eq!(join_from("10.0.0.1").await?.status(), StatusCode::CREATED);
    }
    let limited = join_from("10.0.0.1").await?;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    let (_, body) = refused(limited).await?;
    assert_eq!(body.error.code, ErrorCode::RateLimited);
    // Another address behind the same proxy is not affected.
    assert_eq!(join_from("10.0.0.2").await?.status(), StatusCode::CREATED);
    Ok(())
}

#[tokio::test]
async fn a_token_tells_who_it_is_and_can_be_refreshed_for_the_same_patient() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Post).await?;
    let token = app.join(s.id, Some("Wang")).await?.token;
    let me = app.me(&token).await?;
    assert_eq!(me.role, Role::Patient);
    assert_eq!(me.session, Some(s.id));
    assert_eq!(me.name.as_deref(), Some("Wang"));
    let unauthorized = StatusCode::UNAUTHORIZED;
    assert_eq!(
        app.get("/api/me", Some("garbage")).await?.status(),
        unauthorized
    );
    assert_eq!(app.get("/api/me", None).await?.status(), unauthorized);

    let (mut c, _) = app.connect(s.id, &token).await?;
    let id = c.ask("Is PSA testing useful?").await?.id;
    let refreshed = app.refresh(&token).await?;
    let fresh = refreshed.token.as_str();
    // Within the same second the new token may equal the old one; its expiry never goes back.
    assert!(refreshed.expires_at >= me.expires_at);
    let again = app.me(fresh).await?;
    assert_eq!(again.id, me.id, "the same patient");
    let (_, snap) = app.connect(s.id, fresh).await?;
    assert!(
        snap.questions
            .iter()
            .any(|q| q.id == id && q.author_id == Some(me.id)),
        "my questions survive the refresh: {snap:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_host_reschedules_and_renames_a_session_and_everyone_sees_it() -> anyhow::Result<()> {
    let app = spawn_app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let path = format!("/api/sessions/{}", s.id);
    let patient = app.patient(s.id).await?;
    let (mut c, _) = app.connect(s.id, &patient).await?;
    let admin = Some(app.admin.as_str());

    let res = app
        .patch(
            &path,
            admin,
            &SessionChanges {
                title: Some("Cervical screening: HPV tests".into()),
                scheduled_start: Some(datetime!(2026-12-03 10:00 UTC)),
                moderation: Some(Moderation::Post),
                ..SessionChanges::default()
            },
        )
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = c.recv_session(|_| true).await?;
    assert_eq!(seen.title, "Cervical screening: HPV tests");
    assert_eq!(seen.scheduled_start, datetime!(2026-12-03 10:00 UTC));
    assert_eq!(seen.moderation, Moderation::Post);
    assert_eq!(seen.expert_name, "Dr. Chen", "untouched fields stay");

    let retitle = |title: &str| SessionChanges {
        title: Some(title.into()),
        ..SessionChanges::default()
    };
    for token in [&s.expert, &s.moderator, &patient] {
        let res = app.patch(&path, Some(token), &retitle("x")).await?;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    for bad in [
        json!({"title": "  "}),
        json!({"colour": "red"}),
        json!({"scheduled_start": "soon"}),
    ] {
        let res = app.patch(&path, admin, &bad).await?;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    app.set_state(s.id, &s.expert, SessionState::Live).await?;
    let res = app
        .patch(
            &path,
            admin,
            &SessionChanges {
                scheduled_start: Some(datetime!(2026-12-04 10:00 UTC)),
                ..SessionChanges::default()
            },
        )
        .await?;
    assert_eq!(
        res.status(),
        StatusCode::CONFLICT,
        "a live session keeps its start time"
    );
    let res = app
        .patch(
            &path,
            admin,
            &SessionChanges {
                topic: Some("Now with a topic".into()),
                ..SessionChanges::default()
            },
        )
        .await?;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the text may still be corrected"
    );
    app.set_state(s.id, &s.expert, SessionState::Ended).await?;
    let res = app.patch(&path, admin, &retitle("too late")).await?;
    assert_eq!(res.status(), StatusCode::GONE);
    Ok(())
}
