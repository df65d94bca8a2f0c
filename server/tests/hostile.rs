//! A hostile audience against a real server: a fixed corpus, generated here, of malformed,
//! oversized, out-of-order and wrong-role socket messages and HTTP requests. Each gets the
//! refusal it deserves and nothing else; the server stays healthy; and a well-behaved patient
//! in the same session receives every event, exactly as a resume from the log gives them.

use oncolive_server::Config;

use oncolive_server::domain::Command;
use oncolive_server::model::{Moderation, QuestionId, QuestionStatus};
use oncolive_server::protocol::{ClientMsg, ErrorCode, ServerMsg};
use oncolive_testkit::hub::{HubClient, frame};
use oncolive_testkit::spawn_suite_app;
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::Message;

/// One hostile socket message and the reply it must get.
struct SocketCase {
    who: Who,
    message: Message,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Patient,
    Moderator,
    Expert,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Error(ErrorCode),
    Pong,
}

/// One hostile HTTP request; every one must be refused with a 4xx status.
struct HttpCase {
    method: Method,
    path: String,
    token: Option<Token>,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Token {
    Admin,
    Patient,
    Expert,
    Garbage,
}

fn text(s: impl Into<String>) -> Message {
    Message::Text(s.into().into())
}

/// Every proper prefix of a JSON object is not JSON.
fn prefixes(full: &str) -> impl Iterator<Item = String> + '_ {
    full.char_indices().map(|(i, _)| full[..i].to_owned())
}

/// The socket corpus. `pending` are questions of other patients, still pending: the hostile
/// patient must not even learn they exist.
fn socket_corpus(pending: &[QuestionId]) -> Vec<SocketCase> {
    use Expect::Error as E;
    let mut cases = Vec::new();
    let mut add = |who, message, expect| {
        cases.push(SocketCase {
            who,
            message,
            expect,
        })
    };
    // Malformed: not JSON, not an object, unknown types and fields, wrong types.
    let malformed = [
        "",
        " ",
        "null",
        "true",
        "1",
        "\"ask\"",
        "[]",
        "{}",
        "{\"type\":null}",
        "{\"type\":5}",
        "{\"text\":\"no type\"}",
        "{\"type\":\"unknown\"}",
        "{\"type\":\"ASK\",\"text\":\"x\"}",
        "{\"type\":\"update_session\",\"changes\":{}}",
        "{\"type\":\"ask\"}",
        "{\"type\":\"ask\",\"text\":null}",
        "{\"type\":\"ask\",\"text\":[\"a\"]}",
        "{\"type\":\"ask\",\"text\":\"x\",\"extra\":1}",
        "{\"type\":\"ask\",\"text\":\"\\ud800\"}",
        "{\"type\":\"vote\"}",
        "{\"type\":\"vote\",\"question\":\"7\"}",
        "{\"type\":\"vote\",\"question\":-1}",
        "{\"type\":\"vote\",\"question\":1.5}",
        "{\"type\":\"vote\",\"question\":18446744073709551616}",
        "{\"type\":\"vote\",\"question\":1e400}",
        "{\"type\":\"set_state\",\"state\":\"paused\"}",
        "{\"type\":\"ping\",\"x\":1}",
        "{\"type\":\"ask\",\"req\":{\"a\":1},\"text\":1}",
        "[{\"type\":\"ask\",\"text\":\"x\"}]",
        "{\"type\":\"ask\",\"text\":\"x\"}{\"type\":\"ask\",\"text\":\"y\"}",
    ];
    for m in malformed {
        add(Who::Patient, text(m), E(ErrorCode::BadRequest));
    }
    // Nesting far deeper than the parser follows.
    add(
        Who::Patient,
        text("[".repeat(70_000)),
        E(ErrorCode::TooLarge),
    );
    add(
        Who::Patient,
        text("[".repeat(5_000)),
        E(ErrorCode::BadRequest),
    );
    add(
        Who::Patient,
        text("{\"a\":".repeat(5_000)),
        E(ErrorCode::BadRequest),
    );
    // Every truncation of every kind of request.
    let full = [
        r#"{"type":"ask","req":"r1","text":"At what age?"}"#,
        r#"{"type":"vote","req":"r2","question":1}"#,
        r#"{"type":"unvote","req":"r3","question":1}"#,
        r#"{"type":"approve","req":"r4","question":1,"text":"t"}"#,
        r#"{"type":"reject","req":"r5","question":1,"reason":"r"}"#,
        r#"{"type":"edit","req":"r6","question":1,"text":"t"}"#,
        r#"{"type":"merge","req":"r7","question":2,"into":1}"#,
        r#"{"type":"pin","req":"r8","question":1,"pinned":true}"#,
        r#"{"type":"answering","req":"r9","question":1}"#,
        r#"{"type":"answered","req":"r10","question":1,"answer":"a"}"#,
        r#"{"type":"set_state","req":"r11","state":"ended"}"#,
        r#"{"type":"ping","req":"r12"}"#,
    ];
    for f in full {
        for p in prefixes(f) {
            add(Who::Patient, text(p), E(ErrorCode::BadRequest));
        }
    }
    // Wrong role: a patient moderating, answering, ending the session.
    for q in 1..=8u64 {
        let commands = [
            Command::Approve {
                question: q,
                text: None,
                original: false,
            },
            Command::Reject {
                question: q,
                reason: Some("spam".into()),
                code: None,
            },
            Command::Edit {
                question: q,
                text: "hijacked".into(),
            },
            Command::Merge {
                question: q,
                into: q + 1,
            },
            Command::Pin {
                question: q,
                pinned: true,
            },
            Command::Answering { question: q },
            Command::Answered {
                question: q,
                answer: None,
            },
            Command::SetState {
                state: oncolive_server::model::SessionState::Ended,
            },
        ];
        for c in commands {
            let msg = frame(&ClientMsg::command(format!("w{q}"), c)).expect("encodes");
            add(Who::Patient, msg, E(ErrorCode::Forbidden));
        }
    }
    // ... and staff doing what only patients do, or each other's work.
    for i in 0..10u64 {
        for (who, c) in [
            (Who::Moderator, Command::Ask { text: "x".into() }),
            (Who::Moderator, Command::Vote { question: i }),
            (
                Who::Moderator,
                Command::SetState {
                    state: oncolive_server::model::SessionState::Ended,
                },
            ),
            (Who::Expert, Command::Ask { text: "x".into() }),
            (Who::Expert, Command::Unvote { question: i }),
            (
                Who::Expert,
                Command::Approve {
                    question: i,
                    text: None,
                    original: false,
                },
            ),
            (
                Who::Expert,
                Command::Reject {
                    question: i,
                    reason: Some("r".into()),
                    code: None,
                },
            ),
        ] {
            let msg = frame(&ClientMsg::command(format!("s{i}"), c)).expect("encodes");
            add(who, msg, E(ErrorCode::Forbidden));
        }
    }
    // Out of order: questions that do not exist, or that this patient cannot see.
    for i in 0..40u64 {
        let q = 1_000_000 + i * 7919;
        for c in [
            Command::Vote { question: q },
            Command::Unvote { question: q },
        ] {
            let msg = frame(&ClientMsg::command(format!("n{i}"), c)).expect("encodes");
            add(Who::Patient, msg, E(ErrorCode::NotFound));
        }
    }
    for &q in pending {
        for c in [
            Command::Vote { question: q },
            Command::Unvote { question: q },
        ] {
            let msg = frame(&ClientMsg::command("hidden", c)).expect("encodes");
            add(Who::Patient, msg, E(ErrorCode::NotFound));
        }
    }
    // Staff acting out of order on questions that do not exist.
    for i in 0..20u64 {
        let q = 2_000_000 + i;
        for (who, c) in [
            (
                Who::Moderator,
                Command::Approve {
                    question: q,
                    text: None,
                    original: false,
                },
            ),
            (
                Who::Moderator,
                Command::Merge {
                    question: q,
                    into: q + 1,
                },
            ),
            (
                Who::Expert,
                Command::Answered {
                    question: q,
                    answer: None,
                },
            ),
        ] {
            let msg = frame(&ClientMsg::command("o", c)).expect("encodes");
            add(who, msg, E(ErrorCode::NotFound));
        }
    }
    // Text that is not what it looks like, or out of range.
    let hostile_chars = [
        '\u{0}',
        '\u{7}',
        '\u{1B}',
        '\u{7F}',
        '\u{85}',
        '\u{AD}',
        '\u{61C}',
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{200E}',
        '\u{200F}',
        '\u{202A}',
        '\u{202B}',
        '\u{202C}',
        '\u{202D}',
        '\u{202E}',
        '\u{2060}',
        '\u{2066}',
        '\u{2067}',
        '\u{2068}',
        '\u{2069}',
        '\u{FEFF}',
        '\u{E0001}',
    ];
    for (i, c) in hostile_chars.into_iter().enumerate() {
        for at in [1, 3, 11] {
            let mut t: Vec<char> = "is it safe to fly".chars().collect();
            t.insert(at.min(t.len()), c);
            let t: String = t.into_iter().collect();
            let msg = frame(&ClientMsg::command(
                format!("t{i}"),
                Command::Ask { text: t },
            ))
            .expect("encodes");
            add(Who::Patient, msg, E(ErrorCode::Invalid));
        }
    }
    for t in ["", "   ", "\n\n", &"字".repeat(501)] {
        let msg = frame(&ClientMsg::command("len", Command::Ask { text: t.into() })).expect("ok");
        add(Who::Patient, msg, E(ErrorCode::Invalid));
    }
    // Oversized: over 64 KiB (refused unread, the socket stays open).
    for i in 0..10 {
        let big = format!(
            r#"{{"type":"ask","req":"big{i}","text":"{}"}}"#,
            "a".repeat(65 * 1024 + i * 4096)
        );
        add(Who::Patient, text(big), E(ErrorCode::TooLarge));
    }
    // Binary frames.
    for i in 0..20u8 {
        let bytes = vec![i; usize::from(i) * 37 + 1];
        add(
            Who::Patient,
            Message::Binary(bytes.into()),
            E(ErrorCode::BadRequest),
        );
    }
    // Pings in between, still answered.
    for i in 0..20 {
        add(
            Who::Patient,
            text(format!(r#"{{"type":"ping","req":"p{i}"}}"#)),
            Expect::Pong,
        );
    }
    cases
}

fn http_corpus(session: &str) -> Vec<HttpCase> {
    let mut cases = Vec::new();
    let mut add = |method: Method, path: &str, token, body: &[u8]| {
        cases.push(HttpCase {
            method,
            path: path.to_owned(),
            token,
            body: body.to_vec(),
        })
    };
    let new_session = r#"{"title":"Lung screening","topic":"CT","expert_name":"Dr. Wang","scheduled_start":"2026-12-01T12:00:00Z","moderation":"pre"}"#;
    for p in prefixes(new_session) {
        add(
            Method::POST,
            "/api/sessions",
            Some(Token::Admin),
            p.as_bytes(),
        );
    }
    for token in [
        None,
        Some(Token::Patient),
        Some(Token::Expert),
        Some(Token::Garbage),
    ] {
        add(Method::POST, "/api/sessions", token, new_session.as_bytes());
    }
    let invalid_sessions = [
        r#"{"title":"a\u202eb","expert_name":"e","scheduled_start":"2026-12-01T12:00:00Z"}"#,
        r#"{"title":"","expert_name":"e","scheduled_start":"2026-12-01T12:00:00Z"}"#,
        r#"{"title":"t","expert_name":"e"}"#,
        r#"{"title":"t","expert_name":"e","scheduled_start":"yesterday"}"#,
        r#"{"title":"t","expert_name":"e","scheduled_start":"2026-12-01T12:00:00Z","admin":true}"#,
        r#"{"title":"t","expert_name":"e","scheduled_start":"2026-12-01T12:00:00Z","moderation":"none"}"#,
        r#"{"title":"t\nx","expert_name":"e","scheduled_start":"2026-12-01T12:00:00Z"}"#,
    ];
    for body in invalid_sessions {
        add(
            Method::POST,
            "/api/sessions",
            Some(Token::Admin),
            body.as_bytes(),
        );
    }
    add(
        Method::POST,
        "/api/sessions",
        Some(Token::Admin),
        format!(r#"{{"title":"{}"}}"#, "x".repeat(70 * 1024)).as_bytes(),
    );
    let patch = format!("/api/sessions/{session}");
    for body in [
        r#"{"title":"\u200bhidden"}"#,
        r#"{"scheduled_start":"2026-12-01T12:00:00Z"}"#,
        r#"{"moderation":"post"}"#,
        r#"{"unknown":1}"#,
        r#"{"title":5}"#,
        r#"[]"#,
        r#"not json"#,
    ] {
        add(Method::PATCH, &patch, Some(Token::Admin), body.as_bytes());
    }
    add(
        Method::PATCH,
        &patch,
        Some(Token::Patient),
        br#"{"title":"mine"}"#,
    );
    let join = format!("/api/sessions/{session}/join");
    let joins = [
        r#"{"name":"Dr. Wang"}"#,
        r#"{"name":"Wang (expert)"}"#,
        r#"{"name":"[moderator]"}"#,
        r#"{"name":"王专家"}"#,
        r#"{"name":"ADMIN"}"#,
        r#"{"name":"Li\u202eNa"}"#,
        r#"{"name":"Li\u0000"}"#,
        r#"{"name":"Li\nNa"}"#,
        r#"{"name":5}"#,
        r#"{"nom":"x"}"#,
        r#"[1]"#,
    ];
    for body in joins {
        add(Method::POST, &join, None, body.as_bytes());
    }
    for p in prefixes(r#"{"name":"Zhang"}"#).skip(1) {
        add(Method::POST, &join, None, p.as_bytes());
    }
    let state = format!("/api/sessions/{session}/state");
    for (token, body) in [
        (Some(Token::Patient), r#"{"state":"ended"}"#),
        (None, r#"{"state":"ended"}"#),
        (Some(Token::Garbage), r#"{"state":"ended"}"#),
        (Some(Token::Expert), r#"{"state":"scheduled"}"#),
        (Some(Token::Expert), r#"{"state":"live"}"#),
        (Some(Token::Expert), r#"{"state":"paused"}"#),
        (Some(Token::Expert), r#"{}"#),
        (Some(Token::Expert), r#""#),
    ] {
        add(Method::POST, &state, token, body.as_bytes());
    }
    for path in [
        "/api/sessions/not-a-uuid".to_owned(),
        "/api/sessions/00000000-0000-0000-0000-000000000000".to_owned(),
        "/api/sessions/00000000-0000-0000-0000-000000000000/join".to_owned(),
        format!("/api/sessions/{session}/ws"),
        format!("/api/sessions/{session}/ws?token=garbage"),
        format!("/api/sessions/{session}/ws?since=-1"),
        format!("/api/sessions/{session}/links"),
        "/api/me".to_owned(),
        "/api/nope".to_owned(),
    ] {
        add(Method::GET, &path, None, b"");
        add(Method::GET, &path, Some(Token::Garbage), b"");
    }
    for token in [None, Some(Token::Garbage)] {
        add(Method::POST, "/api/token/refresh", token, b"");
    }
    cases
}

/// Reads until the reply to a request (an error, ack or pong), skipping events and state.
async fn reply(client: &mut HubClient) -> anyhow::Result<ServerMsg> {
    client
        .recv_until(|m| {
            matches!(
                m,
                ServerMsg::Error(_) | ServerMsg::Ack(_) | ServerMsg::Pong { .. }
            )
            .then(|| m.clone())
        })
        .await
}

#[tokio::test]
async fn a_hostile_audience_does_not_break_the_session() -> anyhow::Result<()> {
    let mut config = Config::for_tests();
    // The question budget is tested elsewhere; here it would only slow the honest askers.
    config.limits.asks_per_minute = 100_000;
    let app = spawn_suite_app(config).await?;
    let s = app.live_session(Moderation::Pre).await?;

    // The well-behaved patient, watching everything it may see.
    let good_token = app.patient(s.id).await?;
    let (mut good, first) = app.connect(s.id, &good_token).await?;
    good.keep_events();
    let (mut asker, _) = app.connect_patient(s.id).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;

    // Two questions that stay pending: hidden from the hostile patient.
    let pending = vec![
        asker.ask("Is my scan result normal?").await?.id,
        asker.ask("Can I eat before a colonoscopy?").await?.id,
    ];

    let (mut hostile, _) = app.connect_patient(s.id).await?;
    hostile.consent().await?;
    let (mut hostile_moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut hostile_expert, _) = app.connect(s.id, &s.expert).await?;
    let sockets = socket_corpus(&pending);
    let http = http_corpus(&s.id.to_string());
    assert!(
        sockets.len() + http.len() >= 1000,
        "the corpus has {} socket and {} HTTP cases",
        sockets.len(),
        http.len()
    );

    let patient_token = app.patient(s.id).await?;
    let token_for = |t: Token| match t {
        Token::Admin => app.admin.clone(),
        Token::Patient => patient_token.clone(),
        Token::Expert => s.expert.clone(),
        Token::Garbage => "eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.".to_owned(),
    };

    let mut approved: Vec<QuestionId> = Vec::new();
    let mut honest = 0u32;
    let http_every = sockets.len() / http.len().max(1) + 1;
    let mut http_cases = http.into_iter();
    for (i, case) in sockets.into_iter().enumerate() {
        let client = match case.who {
            Who::Patient => &mut hostile,
            Who::Moderator => &mut hostile_moderator,
            Who::Expert => &mut hostile_expert,
        };
        client.send_raw(case.message).await?;
        let got = reply(client).await?;
        match (case.expect, &got) {
            (Expect::Error(code), ServerMsg::Error(e)) => {
                assert_eq!(e.code, code, "case {i} ({:?}): {}", case.who, e.message);
            }
            (Expect::Pong, ServerMsg::Pong { .. }) => {}
            (expect, got) => panic!("case {i}: expected {expect:?}, got {got:?}"),
        }
        // Interleaved HTTP, spread over the run.
        if i % http_every == 0
            && let Some(req) = http_cases.next()
        {
            let mut builder = app.request(req.method.clone(), &req.path, None);
            if let Some(t) = req.token {
                builder = builder.bearer_auth(token_for(t));
            }
            let res = builder.body(req.body.clone()).send().await?;
            assert!(
                res.status().is_client_error(),
                "{} {} {} answered {}",
                req.method,
                req.path,
                String::from_utf8_lossy(&req.body),
                res.status()
            );
        }
        // Honest traffic all along: a question asked and approved every 25 cases.
        if i % 25 == 0 {
            honest += 1;
            let q = asker
                .ask(format!("Honest question {honest}: how often?"))
                .await?;
            let approve = Command::Approve {
                question: q.id,
                text: None,
                original: false,
            };
            let q = moderator.ok_question(approve).await?;
            assert_eq!(q.status, QuestionStatus::Approved);
            approved.push(q.id);
        }
        if i % 100 == 0 {
            let health = app.get("/healthz", None).await?;
            assert_eq!(health.status(), StatusCode::OK);
        }
    }
    for req in http_cases {
        let mut builder = app.request(req.method.clone(), &req.path, None);
        if let Some(t) = req.token {
            builder = builder.bearer_auth(token_for(t));
        }
        let res = builder.body(req.body).send().await?;
        assert!(
            res.status().is_client_error(),
            "{} {}",
            req.method,
            req.path
        );
    }

    // A frame over 1 MiB closes only its own socket.
    let (mut huge, _) = app.connect_patient(s.id).await?;
    huge.send_raw(text("x".repeat(1024 * 1024 + 1))).await?;
    assert_eq!(huge.closed().await?, Some(1009));

    assert_eq!(app.get("/healthz", None).await?.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz", None).await?.status(), StatusCode::OK);
    // The hostile sockets are still served.
    hostile.ping().await?;
    hostile_moderator.ping().await?;

    // The honest patient got every approved question, in order, with no seq going back
    // (HubClient refuses that)...
    let last = *approved.last().expect("some questions were approved");
    good.question_event(|q| q.id == last && q.status == QuestionStatus::Approved)
        .await?;
    let seen: Vec<QuestionId> = good
        .events
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Question { question, .. } if question.status == QuestionStatus::Approved => {
                Some(question.id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        seen, approved,
        "the honest patient missed approved questions"
    );
    // ... and nothing it should not have: the pending questions never reached it.
    assert!(
        !good.events.iter().any(|m| matches!(
            m,
            ServerMsg::Question { question, .. } if pending.contains(&question.id)
        )),
        "a pending question reached another patient"
    );
    // What it received live is exactly what the log gives a client resuming from its snapshot.
    let live = good.events.clone();
    let mut resumed = HubClient::connect(&app.ws_url(s.id, &good_token, Some(first.seq))).await?;
    match resumed.recv().await? {
        ServerMsg::Resumed { since, seq } => {
            assert_eq!(since, first.seq);
            // The head may be past the last event this patient saw: staff and authors get their
            // own views of the same changes.
            assert!(seq >= live.last().and_then(ServerMsg::event_seq).unwrap_or(since));
        }
        other => anyhow::bail!("expected resumed, got {other:?}"),
    }
    resumed.keep_events();
    for expected in &live {
        let got = resumed
            .recv_until(|m| m.event_seq().is_some().then(|| m.clone()))
            .await?;
        assert_eq!(&got, expected);
    }
    Ok(())
}
