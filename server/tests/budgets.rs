//! Issue 10, point 2: budgets that survive re-joining, caps on a session's questions, caps on
//! WebSocket slots, every frame counted, and HTTP connections that cost without asking closed.
//! Real servers on real sockets; the question budgets and caps on both brokers.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use oncolive_server::Config;
use oncolive_server::config::{BrokerConfig, Limits};
use oncolive_server::domain::Command;
use oncolive_server::model::Moderation;
use oncolive_server::protocol::{CloseCode, ErrorCode, ServerMsg};
use oncolive_testkit::api::refused;
use oncolive_testkit::hub::HubClient;
use oncolive_testkit::raw::{get_keep_alive, server_closes, tcp_from, try_upgrade};
use oncolive_testkit::redis::{RedisServer, unique_prefix};
use oncolive_testkit::{TestApp, spawn_app};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// Far longer than any timeout under test: only a server that never closes hits it.
const PATIENCE: Duration = Duration::from_secs(20);

fn with_limits(limits: impl FnOnce(&mut Limits)) -> Config {
    let mut config = Config::for_tests();
    limits(&mut config.limits);
    config
}

/// Both brokers: the rules that must hold whatever stores the session.
#[derive(Debug, Clone, Copy)]
enum Store {
    Memory,
    Redis,
}

async fn spawn_on(
    store: Store,
    mut config: Config,
) -> anyhow::Result<(TestApp, Option<RedisServer>)> {
    let redis = match store {
        Store::Memory => None,
        Store::Redis => {
            let redis = RedisServer::start();
            config.broker = BrokerConfig::Redis {
                url: redis.url.clone(),
                prefix: unique_prefix(),
                command_timeout: Duration::from_secs(2),
            };
            Some(redis)
        }
    };
    Ok((spawn_app(config).await?, redis))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

async fn patient_socket(app: &TestApp, session: uuid::Uuid) -> anyhow::Result<HubClient> {
    Ok(app.connect_patient(session).await?.0)
}

async fn joining_again_buys_no_new_address_budget(store: Store) -> anyhow::Result<()> {
    let (app, _redis) = spawn_on(
        store,
        with_limits(|l| {
            l.asks_per_minute = 2;
            l.asks_per_minute_per_address = 3;
        }),
    )
    .await?;
    let s = app.live_session(Moderation::Pre).await?;
    let mut first = patient_socket(&app, s.id).await?;
    first.ask("one").await?;
    first.ask("two").await?;
    let own = first
        .refused(Command::Ask {
            text: "three".into(),
        })
        .await?;
    assert_eq!(own.code, ErrorCode::RateLimited, "{own:?}");
    assert!(own.message.contains("2 questions a minute"), "{own:?}");

    // A new token from the same address: its own budget is fresh, the address's is not.
    let mut again = patient_socket(&app, s.id).await?;
    again.ask("three, as someone new").await?;
    let shared = again
        .refused(Command::Ask {
            text: "four".into(),
        })
        .await?;
    assert_eq!(shared.code, ErrorCode::RateLimited, "{shared:?}");
    assert!(shared.message.contains("from one network"), "{shared:?}");
    assert!(shared.retry_after_ms.is_some_and(|ms| ms > 0));
    Ok(())
}

#[tokio::test]
async fn joining_again_buys_no_new_address_budget_in_memory() -> anyhow::Result<()> {
    joining_again_buys_no_new_address_budget(Store::Memory).await
}

#[tokio::test]
async fn joining_again_buys_no_new_address_budget_on_redis() -> anyhow::Result<()> {
    joining_again_buys_no_new_address_budget(Store::Redis).await
}

#[tokio::test]
async fn many_addresses_together_meet_the_session_budget() -> anyhow::Result<()> {
    let app = spawn_app(with_limits(|l| {
        l.asks_per_second_per_session = 1;
        l.asks_per_minute_per_address = 1;
    }))
    .await?;
    let s = app.live_session(Moderation::Pre).await?;
    let other = app.live_session(Moderation::Pre).await?;
    // Ten patients on ten addresses: the session takes a burst of five, then one a second.
    let mut refusals = Vec::new();
    for n in 1..=10u8 {
        let token = app.patient(s.id).await?;
        let source = ip(&format!("127.0.1.{n}"));
        let ws = try_upgrade(&app.ws_url(s.id, &token, None), source)
            .await?
            .map_err(|(status, body)| anyhow::anyhow!("{status}: {body}"))?;
        let mut c = HubClient::from_socket(ws);
        c.snapshot().await?;
        if let Err(e) = c
            .request(Command::Ask {
                text: format!("from {n}"),
            })
            .await?
        {
            refusals.push(e);
        }
    }
    assert!(!refusals.is_empty(), "ten asks in a burst of five");
    for e in &refusals {
        assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
        assert!(e.message.contains("this session"), "{e:?}");
    }
    // Another session's budget is its own.
    let token = app.patient(other.id).await?;
    let ws = try_upgrade(&app.ws_url(other.id, &token, None), ip("127.0.2.1"))
        .await?
        .map_err(|(status, body)| anyhow::anyhow!("{status}: {body}"))?;
    let mut c = HubClient::from_socket(ws);
    c.snapshot().await?;
    c.ask("elsewhere").await?;
    Ok(())
}

async fn a_session_holds_at_most_its_questions(store: Store) -> anyhow::Result<()> {
    let (app, _redis) = spawn_on(
        store,
        with_limits(|l| {
            l.max_questions = 3;
            l.max_pending = 2;
        }),
    )
    .await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let mut p = patient_socket(&app, s.id).await?;
    let first = p.ask("one").await?;
    p.ask("two").await?;
    let pending = p
        .refused(Command::Ask {
            text: "three".into(),
        })
        .await?;
    assert_eq!(pending.code, ErrorCode::Conflict, "{pending:?}");
    assert!(
        pending.message.contains("waiting for the moderators"),
        "{pending:?}"
    );

    moderator
        .ok(Command::Approve {
            question: first.id,
            text: None,
            original: false,
        })
        .await?;
    // A refused ask took no id.
    assert_eq!(p.ask("three").await?.id, 3);
    // Approving frees a pending place, but the session is full.
    moderator
        .ok(Command::Approve {
            question: 2,
            text: None,
            original: false,
        })
        .await?;
    let full = p
        .refused(Command::Ask {
            text: "four".into(),
        })
        .await?;
    assert_eq!(full.code, ErrorCode::Conflict, "{full:?}");
    assert!(full.message.contains("limit of 3 questions"), "{full:?}");
    Ok(())
}

#[tokio::test]
async fn a_session_holds_at_most_its_questions_in_memory() -> anyhow::Result<()> {
    a_session_holds_at_most_its_questions(Store::Memory).await
}

#[tokio::test]
async fn a_session_holds_at_most_its_questions_on_redis() -> anyhow::Result<()> {
    a_session_holds_at_most_its_questions(Store::Redis).await
}

#[tokio::test]
async fn joins_from_one_ipv6_slash_64_share_a_limit() -> anyhow::Result<()> {
    let app = spawn_app(with_limits(|l| {
        l.joins_per_second = 1;
        l.trust_forwarded_for = true;
    }))
    .await?;
    let s = app.create_session(Moderation::Pre).await?;
    let join = |from: &'static str| {
        app.request(Method::POST, &format!("/api/sessions/{}/join", s.id), None)
            .header("x-forwarded-for", from)
            .json(&serde_json::json!({}))
            .send()
    };
    // A burst of five from one /64, each from another address in it.
    for from in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2::3",
        "2001:db8:1:2:aa::4",
        "2001:db8:1:2:bb::5",
    ] {
        assert_eq!(join(from).await?.status(), StatusCode::CREATED, "{from}");
    }
    let (status, body) = refused(join("2001:db8:1:2:cc::6").await?).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body.error.code, ErrorCode::RateLimited);
    // The next /64 is someone else.
    assert_eq!(join("2001:db8:1:3::1").await?.status(), StatusCode::CREATED);
    Ok(())
}

#[tokio::test]
async fn websocket_slots_are_shared_out_per_token_per_address_and_kept_for_staff()
-> anyhow::Result<()> {
    let app = spawn_app(with_limits(|l| {
        l.max_connections = 5;
        l.staff_connections = 1;
        l.connections_per_token = 2;
        l.connections_per_address = 3;
    }))
    .await?;
    let s = app.create_session(Moderation::Pre).await?;
    let home = ip("127.0.3.1");
    let url = |token: &str| app.ws_url(s.id, token, None);

    let one = app.patient(s.id).await?;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            try_upgrade(&url(&one), home)
                .await?
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
    }
    let (status, body) = try_upgrade(&url(&one), home)
        .await?
        .err()
        .context("third socket of one token")?;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("rate_limited") && body.contains("this link"),
        "{body}"
    );

    let two = app.patient(s.id).await?;
    held.push(
        try_upgrade(&url(&two), home)
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    let three = app.patient(s.id).await?;
    let (status, body) = try_upgrade(&url(&three), home)
        .await?
        .err()
        .context("fourth from one address")?;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("your network"), "{body}");

    // Another address gets the fourth slot; the fifth is for staff only.
    let away = ip("127.0.3.2");
    held.push(
        try_upgrade(&url(&three), away)
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    let four = app.patient(s.id).await?;
    let (status, body) = try_upgrade(&url(&four), away)
        .await?
        .err()
        .context("a patient in the staff slot")?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("kept for staff"), "{body}");
    let mut moderator = HubClient::from_socket(
        try_upgrade(&url(&s.moderator), home)
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    moderator.snapshot().await?;
    let (status, body) = try_upgrade(&url(&s.expert), home)
        .await?
        .err()
        .context("a full node")?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no WebSocket slot left"), "{body}");

    // A slot comes back when its socket closes.
    let mut gone = HubClient::from_socket(held.remove(0));
    gone.ws.close(None).await?;
    let _ = gone.closed().await;
    let mut retried = None;
    for _ in 0..100 {
        match try_upgrade(&url(&s.expert), home).await? {
            Ok(ws) => {
                retried = Some(ws);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut expert = HubClient::from_socket(retried.context("the freed slot is taken again")?);
    expert.snapshot().await?;
    Ok(())
}

#[tokio::test]
async fn control_and_binary_frames_count_against_the_socket_limit() -> anyhow::Result<()> {
    let app = spawn_app(with_limits(|l| l.messages_per_second = 5)).await?;
    let s = app.create_session(Moderation::Pre).await?;
    for flood in [
        Message::Ping(vec![1].into()),
        Message::Binary(vec![0; 8].into()),
    ] {
        let mut c = patient_socket(&app, s.id).await?;
        for _ in 0..200 {
            if c.send_raw(flood.clone()).await.is_err() {
                break;
            }
        }
        let mut limited = 0;
        let code = c
            .until_closed(|m| {
                if matches!(m, ServerMsg::Error(e) if e.code == ErrorCode::RateLimited) {
                    limited += 1;
                }
            })
            .await?;
        assert!(limited > 0, "{flood:?}: rate-limit errors before the close");
        assert_eq!(code, Some(CloseCode::Flood as u16), "{flood:?}");
    }
    Ok(())
}

#[tokio::test]
async fn an_oversized_message_is_refused_unread() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    let s = app.create_session(Moderation::Pre).await?;
    let mut c = patient_socket(&app, s.id).await?;
    // A valid request with a `req`, over 64 KiB: refused by its size, so its `req` is not read.
    let text = format!(
        r#"{{"type":"ask","req":"big","text":"{}"}}"#,
        "y".repeat(70_000)
    );
    c.send_raw(Message::Text(text.into())).await?;
    let e = c.recv_error().await?;
    assert_eq!(e.code, ErrorCode::TooLarge, "{e:?}");
    assert_eq!(e.req, None);
    c.ping().await.context("the socket stays usable")?;
    Ok(())
}

fn slow_http(header: Duration, idle: Duration) -> Config {
    with_limits(|l| {
        l.header_read_timeout = header;
        l.idle_timeout = idle;
    })
}

#[tokio::test]
async fn half_a_request_header_is_closed_after_the_header_timeout() -> anyhow::Result<()> {
    // A long idle timeout: only the header timeout can close this connection.
    let app = spawn_app(slow_http(
        Duration::from_millis(300),
        Duration::from_secs(600),
    ))
    .await?;
    let server = app.running.as_ref().context("running")?.addr;
    let mut slow = tcp_from(server, ip("127.0.4.1")).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: oncolive\r\nX-Slow: ")
        .await?;
    let answered = server_closes(&mut slow, PATIENCE).await?;
    assert!(
        answered.is_empty() || answered.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    // Opening and saying nothing is as slow.
    let mut silent = tcp_from(server, ip("127.0.4.1")).await?;
    server_closes(&mut silent, PATIENCE).await?;
    // A prompt client is served.
    let mut prompt = tcp_from(server, ip("127.0.4.2")).await?;
    assert!(
        get_keep_alive(&mut prompt, "/healthz")
            .await?
            .contains("200")
    );
    Ok(())
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_websocket_is_not() -> anyhow::Result<()> {
    let idle = Duration::from_millis(400);
    let app = spawn_app(slow_http(Duration::from_secs(600), idle)).await?;
    let server = app.running.as_ref().context("running")?.addr;
    let mut kept = tcp_from(server, ip("127.0.5.1")).await?;
    assert!(get_keep_alive(&mut kept, "/healthz").await?.contains("200"));
    assert!(
        get_keep_alive(&mut kept, "/healthz").await?.contains("200"),
        "kept alive between requests"
    );
    // The WebSocket was an HTTP request once: the idle timeout must not apply to it.
    let s = app.create_session(Moderation::Pre).await?;
    let mut socket = patient_socket(&app, s.id).await?;
    server_closes(&mut kept, PATIENCE).await?;
    // The keep-alive connection is gone, a whole idle period (and more) has passed since the
    // socket's last frame, and the socket still answers.
    tokio::time::sleep(idle * 2).await;
    socket
        .ping()
        .await
        .context("an idle WebSocket stays open")?;
    Ok(())
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_at_accept() -> anyhow::Result<()> {
    let app = spawn_app(with_limits(|l| l.tcp_per_address = 3)).await?;
    let server = app.running.as_ref().context("running")?.addr;
    let crowd = ip("127.0.6.1");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from(server, crowd).await?);
    }
    let mut over = tcp_from(server, crowd).await?;
    let nothing = server_closes(&mut over, PATIENCE).await?;
    assert!(
        nothing.is_empty(),
        "closed before a byte was read or written"
    );
    // Those under the cap are served, and someone else is not affected.
    assert!(
        get_keep_alive(&mut held[0], "/healthz")
            .await?
            .contains("200")
    );
    let mut other = tcp_from(server, ip("127.0.6.2")).await?;
    assert!(
        get_keep_alive(&mut other, "/healthz")
            .await?
            .contains("200")
    );
    // A place comes back when a connection closes.
    drop(held.pop());
    let mut retried = false;
    for _ in 0..100 {
        let mut again = tcp_from(server, crowd).await?;
        if get_keep_alive(&mut again, "/healthz").await.is_ok() {
            retried = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(retried, "a freed place is given again");
    Ok(())
}
