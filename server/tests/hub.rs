//! The Q&A hub's behaviour, over real sockets. The same tests run against the in-memory broker
//! and, with `ONCOLIVE_TEST_BROKER=redis`, against Redis.

mod common;

use std::collections::HashMap;

use common::{Client, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn question_id(ack: &Value) -> u64 {
    ack["question"]["id"].as_u64().expect("question id in ack")
}

#[tokio::test]
async fn a_question_goes_from_patient_to_moderator_to_everyone_to_the_expert() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let (mut moderator, _) = app.connect(&s.id, &s.moderator).await;
    let (mut expert, _) = app.connect(&s.id, &s.expert).await;
    let alice = app.join(&s.id, Some("Alice")).await;
    let bob = app.join(&s.id, None).await;
    let (mut alice_ws, snap) = app.connect(&s.id, &alice).await;
    assert_eq!(snap["video"], "waiting", "nobody publishes yet");
    assert_eq!(snap["you"]["role"], "patient");
    assert_eq!(snap["you"]["name"], "Alice");
    let (mut bob_ws, _) = app.connect(&s.id, &bob).await;

    // The expert goes live; everyone sees it.
    expert
        .ok(json!({"type": "set_state", "state": "live"}))
        .await;
    for c in [&mut moderator, &mut alice_ws, &mut bob_ws] {
        let ev = c.recv_until("session", |_| true).await;
        assert_eq!(ev["session"]["state"], "live");
    }

    // Alice asks; only she and staff see the pending question.
    let ack = alice_ws
        .ok(json!({"type": "ask", "text": "  Should I get a colonoscopy at 45? My number is 555-1234  "}))
        .await;
    assert_eq!(ack["question"]["status"], "pending");
    assert_eq!(
        ack["question"]["text"],
        "Should I get a colonoscopy at 45? My number is 555-1234"
    );
    let first = question_id(&ack);
    let seen = moderator
        .recv_until("question", |m| m["question"]["id"] == first)
        .await;
    assert_eq!(seen["question"]["status"], "pending");
    assert_eq!(seen["question"]["author"], "Alice");

    let second = question_id(
        &alice_ws
            .ok(json!({"type": "ask", "text": "Buy cheap pills here"}))
            .await,
    );
    moderator
        .recv_until("question", |m| m["question"]["id"] == second)
        .await;

    // The moderator edits out the phone number while approving, and rejects the spam.
    let approved = moderator
        .ok(json!({"type": "approve", "question": first, "text": "Should I get a colonoscopy at 45?"}))
        .await;
    assert_eq!(approved["question"]["edited"], true);
    let rejected = moderator
        .ok(json!({"type": "reject", "question": second, "reason": "Advertising"}))
        .await;
    assert_eq!(rejected["question"]["reason"], "Advertising");

    let public = bob_ws
        .recv_until("question", |m| m["question"]["id"] == first)
        .await;
    assert_eq!(public["question"]["status"], "approved");
    assert_eq!(
        public["question"]["text"],
        "Should I get a colonoscopy at 45?"
    );
    assert!(
        public["question"].get("author_id").is_none(),
        "public view hides the author id"
    );
    let mine = alice_ws
        .recv_until("question", |m| {
            m["question"]["id"] == second && m["question"]["status"] == "rejected"
        })
        .await;
    assert_eq!(mine["question"]["status"], "rejected");
    assert_eq!(mine["question"]["reason"], "Advertising");

    // Bob votes (twice: counted once); the coalesced count reaches Alice.
    let v = bob_ws.ok(json!({"type": "vote", "question": first})).await;
    assert_eq!(v["voted"], true);
    bob_ws.ok(json!({"type": "vote", "question": first})).await;
    let votes = alice_ws
        .recv_until("votes", |m| {
            m["votes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|c| c["id"] == first))
        })
        .await;
    assert_eq!(votes["votes"][0]["votes"], 1);

    // The expert answers.
    expert
        .ok(json!({"type": "answering", "question": first}))
        .await;
    let now = bob_ws
        .recv_until("question", |m| m["question"]["status"] == "answering")
        .await;
    assert_eq!(now["question"]["id"], first);
    expert
        .ok(json!({"type": "answered", "question": first, "answer": "From 45, yes: talk to your doctor."}))
        .await;
    let done = alice_ws
        .recv_until("question", |m| m["question"]["status"] == "answered")
        .await;
    assert_eq!(
        done["question"]["answer"],
        "From 45, yes: talk to your doctor."
    );
    assert!(done["question"]["answered_at"].is_string());

    // Bob never saw the rejected question: a fresh snapshot shows only the public one.
    let (_, snap) = app.connect(&s.id, &bob).await;
    let ids: Vec<u64> = snap["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![first]);
    assert_eq!(snap["my_votes"], json!([first]));
    // Alice's snapshot keeps her rejected question, with the reason.
    let (_, snap) = app.connect(&s.id, &alice).await;
    let rejected = snap["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == second)
        .expect("author sees her rejected question");
    assert_eq!(rejected["reason"], "Advertising");

    // Ending the session: everyone sees it, nothing changes afterwards.
    expert
        .ok(json!({"type": "set_state", "state": "ended"}))
        .await;
    let ended = bob_ws
        .recv_until("session", |m| m["session"]["state"] == "ended")
        .await;
    assert!(ended["session"]["ended_at"].is_string());
    let refused = alice_ws
        .request(json!({"type": "ask", "text": "too late?"}))
        .await;
    assert_eq!(refused["code"], "session_ended");
}

#[tokio::test]
async fn post_moderated_questions_are_public_at_once_and_removal_reaches_everyone() {
    let app = spawn_app().await;
    let s = app.create_session("post").await;
    let (mut moderator, _) = app.connect(&s.id, &s.moderator).await;
    let p1 = app.join(&s.id, None).await;
    let p2 = app.join(&s.id, None).await;
    let (mut a, _) = app.connect(&s.id, &p1).await;
    let (mut b, _) = app.connect(&s.id, &p2).await;
    let id = question_id(
        &a.ok(json!({"type": "ask", "text": "Is HPV vaccination useful after 26?"}))
            .await,
    );
    let seen = b
        .recv_until("question", |m| m["question"]["id"] == id)
        .await;
    assert_eq!(seen["question"]["status"], "approved");
    moderator
        .ok(json!({"type": "reject", "question": id, "reason": "Duplicate"}))
        .await;
    let removed = b.recv_until("question_removed", |_| true).await;
    assert_eq!(removed["id"], id);
    let own = a
        .recv_until("question", |m| m["question"]["status"] == "rejected")
        .await;
    assert_eq!(own["question"]["reason"], "Duplicate");
}

#[tokio::test]
async fn merging_moves_votes_and_pinning_reorders_the_queue() {
    let app = spawn_app().await;
    let s = app.create_session("post").await;
    let (mut moderator, _) = app.connect(&s.id, &s.moderator).await;
    let mut patients = Vec::new();
    for _ in 0..3 {
        let token = app.join(&s.id, None).await;
        patients.push(app.connect(&s.id, &token).await.0);
    }
    let a = question_id(
        &patients[0]
            .ok(json!({"type": "ask", "text": "Does smoking cause lung cancer?"}))
            .await,
    );
    let b = question_id(
        &patients[1]
            .ok(json!({"type": "ask", "text": "Is smoking a cause of lung cancer?"}))
            .await,
    );
    let c = question_id(
        &patients[2]
            .ok(json!({"type": "ask", "text": "What is a nodule?"}))
            .await,
    );
    patients[0].ok(json!({"type": "vote", "question": a})).await;
    patients[1].ok(json!({"type": "vote", "question": b})).await;
    patients[2].ok(json!({"type": "vote", "question": b})).await;
    patients[2].ok(json!({"type": "vote", "question": a})).await;
    let merged = moderator
        .ok(json!({"type": "merge", "question": b, "into": a}))
        .await;
    assert_eq!(merged["question"]["status"], "merged");
    assert_eq!(merged["question"]["merged_into"], a);
    let target = patients[0]
        .recv_until("question", |m| {
            m["question"]["id"] == a && m["question"]["votes"] == 3
        })
        .await;
    assert_eq!(target["question"]["status"], "approved");
    moderator
        .ok(json!({"type": "pin", "question": c, "pinned": true}))
        .await;
    let (_, snap) = app.connect(&s.id, &app.join(&s.id, None).await).await;
    let order: Vec<u64> = snap["questions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["status"] == "approved")
        .map(|q| q["id"].as_u64().unwrap())
        .collect();
    assert_eq!(order, vec![c, a], "pinned first, then by votes");
    // Taking back a vote.
    let unvote = patients[0]
        .ok(json!({"type": "unvote", "question": a}))
        .await;
    assert_eq!(unvote["voted"], false);
    patients[1]
        .recv_until("votes", |m| {
            m["votes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x["id"] == a && x["votes"] == 2))
        })
        .await;
}

#[tokio::test]
async fn every_role_does_only_its_own_work() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let other = app.create_session("pre").await;
    let patient = app.join(&s.id, None).await;
    let (mut p, _) = app.connect(&s.id, &patient).await;
    let (mut m, _) = app.connect(&s.id, &s.moderator).await;
    let (mut e, _) = app.connect(&s.id, &s.expert).await;
    let id = question_id(&p.ok(json!({"type": "ask", "text": "q"})).await);

    for (who, msg) in [
        ("p", json!({"type": "approve", "question": id})),
        ("p", json!({"type": "set_state", "state": "live"})),
        ("m", json!({"type": "ask", "text": "q"})),
        ("m", json!({"type": "answering", "question": id})),
        (
            "e",
            json!({"type": "reject", "question": id, "reason": "x"}),
        ),
        ("e", json!({"type": "vote", "question": id})),
    ] {
        let client = match who {
            "p" => &mut p,
            "m" => &mut m,
            _ => &mut e,
        };
        let reply = client.request(msg.clone()).await;
        assert_eq!(reply["code"], "forbidden", "{msg} gave {reply}");
    }

    // A token of one session is refused at another's socket and HTTP endpoints.
    let url = app.ws_url(&other.id, &s.expert, None);
    let err = tokio_tungstenite::connect_async(&url)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("403"), "{err}");
    let res = app
        .post(
            &format!("/api/sessions/{}/state", other.id),
            Some(&s.expert),
            &json!({"state": "live"}),
        )
        .await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");

    // No token, a bad token: 401 with a JSON body.
    for token in ["", "not-a-token"] {
        let url = format!(
            "{}/api/sessions/{}/ws?token={token}",
            app.url.replacen("http", "ws", 1),
            s.id
        );
        let err = tokio_tungstenite::connect_async(&url)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("401"), "{err}");
    }
    let res = app.post("/api/sessions", None, &json!({})).await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    // Only admins create sessions or read links; a moderator cannot change the state.
    for token in [&s.expert, &s.moderator, &patient] {
        let res = app.post("/api/sessions", Some(token), &json!({"title": "x", "expert_name": "y", "scheduled_start": "2026-12-01T00:00:00Z"})).await;
        assert_eq!(res.status(), 403);
        let res = app
            .get(&format!("/api/sessions/{}/links", s.id), Some(token))
            .await;
        assert_eq!(res.status(), 403);
    }
    let res = app
        .post(
            &format!("/api/sessions/{}/state", s.id),
            Some(&s.moderator),
            &json!({"state": "live"}),
        )
        .await;
    assert_eq!(res.status(), 403);
    // The expert may, over HTTP too; going back is a conflict.
    let res = app
        .post(
            &format!("/api/sessions/{}/state", s.id),
            Some(&s.expert),
            &json!({"state": "live"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post(
            &format!("/api/sessions/{}/state", s.id),
            Some(&s.expert),
            &json!({"state": "scheduled"}),
        )
        .await;
    assert_eq!(res.status(), 409, "a session never goes back to scheduled");
    // An admin acts anywhere.
    let (mut admin, _) = app.connect(&other.id, &app.admin).await;
    admin
        .ok(json!({"type": "set_state", "state": "live"}))
        .await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_socket_stays_usable() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let token = app.join(&s.id, None).await;
    let (mut c, _) = app.connect(&s.id, &token).await;

    let cases: Vec<(Message, &str, Option<&str>)> = vec![
        (Message::Text("{not json".into()), "bad_request", None),
        (
            Message::Text(r#"{"type":"fly","req":"a1"}"#.into()),
            "bad_request",
            Some("a1"),
        ),
        (
            Message::Text(r#"{"type":"vote","req":"a2","question":"seven"}"#.into()),
            "bad_request",
            Some("a2"),
        ),
        (Message::Text(r#"[1,2,3]"#.into()), "bad_request", None),
        (Message::Binary(vec![1, 2, 3].into()), "bad_request", None),
        (
            Message::Text(
                json!({"type": "ask", "req": "a3", "text": "x".repeat(501)})
                    .to_string()
                    .into(),
            ),
            "invalid",
            Some("a3"),
        ),
        (
            Message::Text(
                json!({"type": "ask", "req": "a4", "text": "   "})
                    .to_string()
                    .into(),
            ),
            "invalid",
            Some("a4"),
        ),
        (
            Message::Text(
                json!({"type": "ask", "req": "a5", "text": "y".repeat(70_000)})
                    .to_string()
                    .into(),
            ),
            "too_large",
            Some("a5"),
        ),
        (
            Message::Text(
                json!({"type": "vote", "req": "a6", "question": 999})
                    .to_string()
                    .into(),
            ),
            "not_found",
            Some("a6"),
        ),
    ];
    for (msg, code, req) in cases {
        c.send_raw(msg).await;
        let reply = c.recv_until("error", |_| true).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], code, "{reply}");
        match req {
            Some(r) => assert_eq!(reply["req"], r),
            None => assert!(reply["req"].is_null()),
        }
        let pong = c.request(json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong", "socket still usable");
    }
    // 500 Chinese characters are allowed: the limit counts characters, not bytes.
    c.ok(json!({"type": "ask", "text": "癌".repeat(500)})).await;
}

#[tokio::test]
async fn a_frame_over_one_mebibyte_closes_with_1009() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let token = app.join(&s.id, None).await;
    let (mut c, _) = app.connect(&s.id, &token).await;
    c.send_raw(Message::Text("z".repeat(1_100_000).into()))
        .await;
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn a_flood_closes_the_socket_with_4008_and_questions_are_rate_limited() {
    let app = spawn_app_with(&["--messages-per-second", "5", "--asks-per-minute", "3"]).await;
    let s = app.create_session("pre").await;
    let token = app.join(&s.id, None).await;
    let (mut c, _) = app.connect(&s.id, &token).await;
    for i in 0..3 {
        c.ok(json!({"type": "ask", "text": format!("question {i}")}))
            .await;
    }
    let limited = c
        .request(json!({"type": "ask", "text": "one too many"}))
        .await;
    assert_eq!(limited["code"], "rate_limited");
    assert!(limited["retry_after_ms"].as_u64().is_some());
    // Reconnecting does not reset the limit: it is per patient.
    let (mut again, _) = app.connect(&s.id, &token).await;
    let limited = again
        .request(json!({"type": "ask", "text": "still too many"}))
        .await;
    assert_eq!(limited["code"], "rate_limited");

    for _ in 0..200 {
        c.send(json!({"type": "ping"})).await;
    }
    let mut saw_limit = false;
    let code = loop {
        match tokio::time::timeout(common::WAIT, futures_util::StreamExt::next(&mut c.ws)).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                saw_limit |= t.as_str().contains("rate_limited");
            }
            Ok(Some(Ok(Message::Close(f)))) => break f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("unexpected: {other:?}"),
        }
    };
    assert!(saw_limit, "rate-limit errors come before the close");
    assert_eq!(code, Some(4008));
}

#[tokio::test]
async fn a_client_that_reconnects_mid_burst_gets_each_missed_event_once_in_order() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let (mut moderator, _) = app.connect(&s.id, &s.moderator).await;
    let asker = app.join(&s.id, None).await;
    let (mut asker_ws, _) = app.connect(&s.id, &asker).await;
    // Many patients asking: a handful of questions each, within the per-patient limit.
    let mut ids = Vec::new();
    for i in 0..60 {
        if i % 5 == 0 && i > 0 {
            let t = app.join(&s.id, None).await;
            asker_ws = app.connect(&s.id, &t).await.0;
        }
        ids.push(question_id(
            &asker_ws
                .ok(json!({"type": "ask", "text": format!("question number {i}")}))
                .await,
        ));
    }
    let watcher = app.join(&s.id, None).await;
    let (mut w, _) = app.connect(&s.id, &watcher).await;

    // Approve in a burst from another task while the watcher drops out after ten events.
    let burst = tokio::spawn({
        let ids = ids.clone();
        async move {
            for id in ids {
                moderator
                    .ok(json!({"type": "approve", "question": id}))
                    .await;
            }
            moderator
        }
    });
    let mut approved: Vec<u64> = Vec::new();
    while approved.len() < 10 {
        let ev = w.recv_until("question", |_| true).await;
        approved.push(ev["question"]["id"].as_u64().unwrap());
    }
    let since = w.seq;
    drop(w);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut w = Client::connect(&app.ws_url(&s.id, &watcher, Some(since))).await;
    let first = w.recv().await;
    assert_eq!(first["type"], "resumed", "{first}");
    assert_eq!(first["since"], since);
    w.seq = since;
    while approved.len() < ids.len() {
        let ev = w.recv_until("question", |_| true).await;
        assert_eq!(ev["question"]["status"], "approved");
        approved.push(ev["question"]["id"].as_u64().unwrap());
    }
    burst.await.unwrap();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for id in &approved {
        *counts.entry(*id).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "each approval exactly once"
    );
    assert_eq!(approved, ids, "in the order they were approved");
}

#[tokio::test]
async fn a_client_too_far_behind_gets_a_snapshot() {
    let app = spawn_app_with(&["--history", "5"]).await;
    let s = app.create_session("post").await;
    let (mut m, _) = app.connect(&s.id, &s.moderator).await;
    let p = app.join(&s.id, None).await;
    let (mut c, _) = app.connect(&s.id, &p).await;
    let id = question_id(&c.ok(json!({"type": "ask", "text": "first"})).await);
    for i in 0..10 {
        m.ok(json!({"type": "edit", "question": id, "text": format!("edit {i}")}))
            .await;
    }
    let mut again = Client::connect(&app.ws_url(&s.id, &p, Some(1))).await;
    let first = again.recv().await;
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["questions"][0]["text"], "edit 9");
    // `since` ahead of the head also gets a snapshot.
    let mut ahead = Client::connect(&app.ws_url(&s.id, &p, Some(1_000_000))).await;
    assert_eq!(ahead.recv().await["type"], "snapshot");
}

#[tokio::test]
async fn a_stalled_client_is_dropped_while_the_others_carry_on() {
    let app = spawn_app_with(&["--socket-queue", "256"]).await;
    let s = app.create_session("post").await;
    let p = app.join(&s.id, None).await;
    let (mut asker, _) = app.connect(&s.id, &p).await;
    let id = question_id(
        &asker
            .ok(json!({"type": "ask", "text": "Screening intervals?"}))
            .await,
    );

    // A client with a tiny receive buffer that never reads.
    let stalled_token = app.join(&s.id, None).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(app.url.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(
        app.ws_url(&s.id, &stalled_token, None),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();

    let healthy_token = app.join(&s.id, None).await;
    let (mut healthy, _) = app.connect(&s.id, &healthy_token).await;
    let (mut m, _) = app.connect(&s.id, &s.moderator).await;
    // The healthy client reads everything, checking each edit arrives once and in order.
    let reader = tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            let ev = healthy.recv_until("question", |_| true).await;
            let text = ev["question"]["text"].as_str().unwrap().to_owned();
            if text == "done" {
                return next;
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
        m.ok(json!({"type": "edit", "question": id, "text": format!("{text}#{edits}")}))
            .await;
        edits += 1;
        if edits > 4000 {
            // The buffers are full by now; go on slowly until the server's verdict.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if edits.is_multiple_of(100) {
            let metrics = app.metrics().await;
            if metrics
                .lines()
                .any(|l| l.starts_with("oncolive_ws_slow_disconnects_total") && !l.ends_with(" 0"))
            {
                break true;
            }
        }
        if edits >= 20_000 || started.elapsed() > std::time::Duration::from_secs(60) {
            break false;
        }
    };
    m.ok(json!({"type": "edit", "question": id, "text": "done"}))
        .await;
    assert!(dropped, "the stalled client was never dropped");
    assert_eq!(
        reader.await.unwrap(),
        edits,
        "the healthy client got every edit"
    );
    // What the stalled client was sent before it was dropped ends with a 4000 close.
    let code = loop {
        match tokio::time::timeout(
            std::time::Duration::from_secs(30),
            futures_util::StreamExt::next(&mut stalled),
        )
        .await
        {
            Ok(Some(Ok(Message::Close(f)))) => break f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => break None,
            Err(_) => panic!("the stalled client's socket stayed open"),
        }
    };
    assert!(
        matches!(code, Some(4000) | None),
        "closed as too slow, got {code:?}"
    );
}

#[tokio::test]
async fn everyone_sees_the_viewer_count() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let t = app.join(&s.id, None).await;
        clients.push(app.connect(&s.id, &t).await.0);
    }
    let v = clients[0].recv_until("viewers", |m| m["count"] == 3).await;
    assert!(v["seq"].is_u64());
    let res: Value = app
        .get(&format!("/api/sessions/{}", s.id), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["viewers"], 3);
    clients.pop();
    clients[0].recv_until("viewers", |m| m["count"] == 2).await;
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let mut app = spawn_app().await;
    let s = app.create_session("pre").await;
    let t = app.join(&s.id, None).await;
    let (mut c, _) = app.connect(&s.id, &t).await;
    let closing = tokio::spawn(async move { c.closed().await });
    app.shutdown().await;
    assert_eq!(closing.await.unwrap(), Some(1001));
}

#[tokio::test]
async fn sessions_are_listed_and_shown_and_bad_bodies_are_refused() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    assert!(
        s.body["links"]["expert"]
            .as_str()
            .unwrap()
            .contains("#token=")
    );
    assert!(
        s.body["links"]["patient"]
            .as_str()
            .unwrap()
            .ends_with(&s.id)
    );
    let list: Value = app.get("/api/sessions", None).await.json().await.unwrap();
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == s.id.as_str())
    );
    let missing = app
        .http
        .get(format!(
            "{}/api/sessions/0193a4f2-6c1e-7b3a-9f2e-5d4c3b2a1908",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    for body in [
        json!({"title": "", "expert_name": "x", "scheduled_start": "2026-12-01T00:00:00Z"}),
        json!({"title": "x", "expert_name": "x", "scheduled_start": "tomorrow"}),
        json!({"title": "x", "expert_name": "x", "scheduled_start": "2026-12-01T00:00:00Z", "moderation": "none"}),
    ] {
        let res = app.post("/api/sessions", Some(&app.admin), &body).await;
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "bad_request");
    }
    let qr = app
        .get(&format!("/api/sessions/{}/qr.svg", s.id), None)
        .await;
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");
    assert!(qr.text().await.unwrap().contains("<svg"));
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let metrics = app.metrics().await;
    assert!(metrics.contains("oncolive_sessions"), "{metrics}");
    assert!(
        metrics.contains("oncolive_questions_total") || metrics.contains("oncolive_ws_connections")
    );
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_with_4001() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let running = app.running.as_ref().unwrap();
    let (_, short) = running.app.keys.issue(
        oncolive_server::model::Role::Moderator,
        Some(s.id.parse().unwrap()),
        None,
        std::time::Duration::from_secs(1),
    );
    let (mut c, _) = app.connect(&s.id, &short).await;
    assert_eq!(c.closed().await, Some(4001));
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_4009() {
    let app = spawn_app_with(&["--ping-interval-secs", "1"]).await;
    let s = app.create_session("pre").await;
    let t = app.join(&s.id, None).await;
    let (mut c, _) = app.connect(&s.id, &t).await;
    // Not reading means not answering pings; after 2.4 intervals the server gives up.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(c.closed().await, Some(4009));
}

#[tokio::test]
async fn joins_are_limited_per_client_address_and_the_proxy_address_can_be_trusted() {
    let app = spawn_app_with(&["--joins-per-second", "1", "--trust-forwarded-for"]).await;
    let s = app.create_session("pre").await;
    let join_from = |ip: &'static str| {
        app.http
            .post(format!("{}/api/sessions/{}/join", app.url, s.id))
            .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
            .json(&json!({}))
            .send()
    };
    // A burst of five is allowed, then 429 with Retry-After.
    for _ in 0..5 {
        assert_eq!(join_from("10.0.0.1").await.unwrap().status(), 201);
    }
    let limited = join_from("10.0.0.1").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another address behind the same proxy is not affected.
    assert_eq!(join_from("10.0.0.2").await.unwrap().status(), 201);
}

#[tokio::test]
async fn a_token_tells_who_it_is_and_can_be_refreshed_for_the_same_patient() {
    let app = spawn_app().await;
    let s = app.create_session("post").await;
    let token = app.join(&s.id, Some("Wang")).await;
    let me: Value = app.get("/api/me", Some(&token)).await.json().await.unwrap();
    assert_eq!(me["role"], "patient");
    assert_eq!(me["session"], s.id.as_str());
    assert_eq!(me["name"], "Wang");
    assert_eq!(app.get("/api/me", Some("garbage")).await.status(), 401);
    assert_eq!(app.get("/api/me", None).await.status(), 401);

    let (mut c, _) = app.connect(&s.id, &token).await;
    let id = question_id(
        &c.ok(json!({"type": "ask", "text": "Is PSA testing useful?"}))
            .await,
    );
    let refreshed: Value = app
        .post("/api/token/refresh", Some(&token), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let fresh = refreshed["token"].as_str().unwrap();
    // Within the same second the new token may equal the old one; its expiry never goes back.
    assert!(refreshed["expires_at"].as_u64() >= me["expires_at"].as_u64());
    let again: Value = app.get("/api/me", Some(fresh)).await.json().await.unwrap();
    assert_eq!(again["id"], me["id"], "the same patient");
    let (_, snap) = app.connect(&s.id, fresh).await;
    let mine = snap["questions"].as_array().unwrap();
    assert!(
        mine.iter()
            .any(|q| q["id"] == id && q["author_id"] == me["id"]),
        "my questions survive the refresh: {snap}"
    );
}

#[tokio::test]
async fn a_host_reschedules_and_renames_a_session_and_everyone_sees_it() {
    let app = spawn_app().await;
    let s = app.create_session("pre").await;
    let path = format!("/api/sessions/{}", s.id);
    let patient = app.join(&s.id, None).await;
    let (mut c, _) = app.connect(&s.id, &patient).await;

    let patch = |token: Option<String>, body: Value| {
        let req = app.http.patch(format!("{}{path}", app.url)).json(&body);
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        req.send()
    };
    let res = patch(
        Some(app.admin.clone()),
        json!({"title": "Cervical screening: HPV tests", "scheduled_start": "2026-12-03T10:00:00Z", "moderation": "post"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let seen = c.recv_until("session", |_| true).await;
    assert_eq!(seen["session"]["title"], "Cervical screening: HPV tests");
    assert_eq!(seen["session"]["scheduled_start"], "2026-12-03T10:00:00Z");
    assert_eq!(seen["session"]["moderation"], "post");
    assert_eq!(
        seen["session"]["expert_name"], "Dr. Chen",
        "untouched fields stay"
    );

    for token in [&s.expert, &s.moderator, &patient] {
        let res = patch(Some(token.clone()), json!({"title": "x"}))
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
    }
    for bad in [
        json!({"title": "  "}),
        json!({"colour": "red"}),
        json!({"scheduled_start": "soon"}),
    ] {
        let res = patch(Some(app.admin.clone()), bad.clone()).await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }

    let live = app
        .post(
            &format!("/api/sessions/{}/state", s.id),
            Some(&s.expert),
            &json!({"state": "live"}),
        )
        .await;
    assert_eq!(live.status(), 200);
    let res = patch(
        Some(app.admin.clone()),
        json!({"scheduled_start": "2026-12-04T10:00:00Z"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 409, "a live session keeps its start time");
    let res = patch(
        Some(app.admin.clone()),
        json!({"topic": "Now with a topic"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200, "the text may still be corrected");
    let ended = app
        .post(
            &format!("/api/sessions/{}/state", s.id),
            Some(&s.expert),
            &json!({"state": "ended"}),
        )
        .await;
    assert_eq!(ended.status(), 200);
    let res = patch(Some(app.admin.clone()), json!({"title": "too late"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 410);
}
