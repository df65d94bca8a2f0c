//! Tokens that can be contained: the socket takes its token in `Sec-WebSocket-Protocol` (not
//! the URL), the host replaces leaked staff links at once (open sockets included), and refresh
//! stops at a maximum age from the first issue. On both brokers (`ONCOLIVE_TEST_BROKER=redis`).

use anyhow::{Context, bail, ensure};
use oncolive_server::Config;
use oncolive_server::auth::{Claims, Keys, unix_now};
use oncolive_server::domain::Command;
use oncolive_server::model::Moderation;
use oncolive_server::protocol::{CloseCode, ErrorCode, ServerMsg};
use oncolive_testkit::api::refused;
use oncolive_testkit::hub::{SocketOptions, connect_request};
use oncolive_testkit::{HubClient, TestApp, spawn_suite_app};
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn app() -> anyhow::Result<TestApp> {
    spawn_suite_app(Config::for_tests()).await
}

/// The upgrade request for `url` offering `protocols` (none when empty).
fn upgrade(
    url: &str,
    protocols: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    let mut request = url.into_client_request()?;
    if !protocols.is_empty() {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse()?);
    }
    Ok(request)
}

#[tokio::test]
async fn the_socket_takes_its_token_as_a_subprotocol_not_in_the_url() -> anyhow::Result<()> {
    let app = app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let patient = app.patient(s.id).await?;
    let target = app.ws_url(s.id, &patient, None);
    ensure!(!target.url.contains("token"), "{}", target.url);

    // The test kit's client offers `oncolive.v1, bearer.<token>`; the server picks oncolive.v1.
    let (ws, response) = tokio_tungstenite::connect_async(upgrade(
        &target.url,
        &format!("oncolive.v1, bearer.{patient}"),
    )?)
    .await?;
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"oncolive.v1"[..])
    );
    drop(ws);
    let (mut client, snapshot) = app.connect(s.id, &patient).await?;
    assert_eq!(snapshot.you.role, oncolive_server::model::Role::Patient);
    client.ask("Is a FIT test enough?").await?;

    // A token without oncolive.v1 would fail in a browser: refused with the reason.
    let err = connect_request(
        upgrade(&target.url, &format!("bearer.{patient}"))?,
        SocketOptions::default(),
    )
    .await
    .err()
    .context("a bearer protocol without oncolive.v1 was accepted")?;
    assert!(format!("{err:#}").contains("400"), "{err:#}");
    // No token anywhere: 401.
    let err = connect_request(
        upgrade(&target.url, "oncolive.v1")?,
        SocketOptions::default(),
    )
    .await
    .err()
    .context("a socket without a token was accepted")?;
    assert!(format!("{err:#}").contains("401"), "{err:#}");

    // The deprecated `?token=` of pages loaded before the change still works, and is counted
    // so that an operator sees when it can go.
    let legacy = format!("{}?token={patient}", target.url);
    let ws = connect_request(upgrade(&legacy, "")?, SocketOptions::default()).await?;
    let mut legacy = HubClient::from_socket(ws);
    legacy.snapshot().await?;
    let metrics = app.metrics().await?;
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("oncolive_ws_url_tokens_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .context("oncolive_ws_url_tokens_total is exported")?;
    assert!(counted >= 1.0, "{counted}");
    Ok(())
}

#[tokio::test]
async fn replacing_the_links_refuses_the_old_staff_tokens_at_once_and_closes_their_sockets()
-> anyhow::Result<()> {
    let app = app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let (mut moderator, _) = app.connect(s.id, &s.moderator).await?;
    let (mut expert, _) = app.connect(s.id, &s.expert).await?;
    let patient_token = app.patient(s.id).await?;
    let (mut patient, _) = app.connect(s.id, &patient_token).await?;
    let pending = patient.ask("Can I eat before a colonoscopy?").await?;

    // Only an admin may replace the links.
    let path = format!("/api/sessions/{}/links/rotate", s.id);
    let res = app
        .request(Method::POST, &path, Some(&s.expert))
        .send()
        .await?;
    assert_eq!(refused(res).await?.0, StatusCode::FORBIDDEN);

    let rotated = app.rotate_links(s.id).await?;
    assert_eq!(rotated.session.links_version, 1);
    assert_ne!(rotated.tokens.moderator, s.moderator);
    assert!(rotated.links.moderator.contains(&rotated.tokens.moderator));

    // Open sockets of the old links are closed with 4003, at once.
    for (who, socket) in [("moderator", &mut moderator), ("expert", &mut expert)] {
        let code = socket.closed().await?;
        assert_eq!(code, Some(CloseCode::Revoked as u16), "{who}");
    }
    // The old tokens are refused everywhere: socket, HTTP, refresh, WHIP.
    for old in [&s.moderator, &s.expert] {
        let Err(err) = HubClient::connect(&app.ws_url(s.id, old, None)).await else {
            bail!("a replaced link opened a socket");
        };
        assert!(format!("{err:#}").contains("401"), "{err:#}");
        let (status, body) = refused(app.get("/api/me", Some(old)).await?).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body.error.message.contains("replaced"),
            "{}",
            body.error.message
        );
        let res = app
            .request(Method::POST, "/api/token/refresh", Some(old))
            .send()
            .await?;
        assert_eq!(refused(res).await?.0, StatusCode::UNAUTHORIZED);
    }
    let whip = |token: &str| {
        app.request(
            Method::POST,
            &format!("/api/sessions/{}/whip", s.id),
            Some(token),
        )
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
    };
    assert_eq!(whip(&s.expert).await?.status(), StatusCode::UNAUTHORIZED);
    assert_ne!(
        whip(&rotated.tokens.expert).await?.status(),
        StatusCode::UNAUTHORIZED
    );

    // The patient was not touched: it hears of the new session version and keeps asking.
    patient.recv_session(|s| s.links_version == 1).await?;
    patient.ask("And after?").await?;

    // The new links work, and GET links hands out tokens of the current version.
    let (mut moderator, _) = app.connect(s.id, &rotated.tokens.moderator).await?;
    moderator
        .ok(Command::Approve {
            question: pending.id,
            text: None,
            original: false,
        })
        .await?;
    let res = app
        .get(&format!("/api/sessions/{}/links", s.id), Some(&app.admin))
        .await?;
    let links: oncolive_server::api_types::Created =
        oncolive_testkit::api::read(res, StatusCode::OK).await?;
    app.me(&links.tokens.moderator).await?;
    app.connect(s.id, &links.tokens.expert).await?;
    Ok(())
}

#[tokio::test]
async fn a_command_in_flight_from_a_replaced_link_is_refused_and_closes_the_socket()
-> anyhow::Result<()> {
    let app = app().await?;
    let s = app.live_session(Moderation::Pre).await?;
    let patient = app.patient(s.id).await?;
    let (mut p, _) = app.connect(s.id, &patient).await?;
    let q = p.ask("What does a positive FIT mean?").await?;
    let (mut m, _) = app.connect(s.id, &s.moderator).await?;
    app.rotate_links(s.id).await?;
    // Whether the session event or the refusal arrives first, the command is not applied and
    // the socket ends with 4003.
    let sent = m
        .submit(Command::Approve {
            question: q.id,
            text: None,
            original: false,
        })
        .await;
    let mut refusal = None;
    let code = match sent {
        Ok(_) => {
            m.until_closed(|msg| {
                if let ServerMsg::Error(e) = msg {
                    refusal = Some(e.code);
                }
            })
            .await?
        }
        Err(_) => None,
    };
    if let Some(code) = code {
        assert_eq!(code, CloseCode::Revoked as u16);
    }
    if let Some(refusal) = refusal {
        assert_eq!(refusal, ErrorCode::Unauthorized);
    }
    let info = app.session(s.id).await?;
    assert_eq!(info.session.links_version, 1);
    // Still pending: nobody approved it.
    let (_, snapshot) = app.connect(s.id, &app.admin).await?;
    let still = snapshot
        .questions
        .iter()
        .find(|x| x.id == q.id)
        .context("the question")?;
    assert_eq!(
        still.status,
        oncolive_server::model::QuestionStatus::Pending
    );
    Ok(())
}

#[tokio::test]
async fn refresh_keeps_the_first_issue_time_and_stops_at_the_maximum_age() -> anyhow::Result<()> {
    let app = app().await?;
    let s = app.create_session(Moderation::Pre).await?;
    let joined = app.join(s.id, Some("Mei")).await?;
    let keys = Keys::new(
        Config::for_tests()
            .secret
            .context("the tests' secret")?
            .as_bytes(),
    );
    let first = keys.verify(&joined.token)?;
    let first_issued = first.orig_iat.context("a new token carries orig_iat")?;

    let refreshed = app.refresh(&joined.token).await?;
    let again = keys.verify(&refreshed.token)?;
    assert_eq!(again.orig_iat, Some(first_issued));
    assert_eq!((again.sub, again.name.as_deref()), (first.sub, Some("Mei")));

    // A token first issued 91 days ago, itself valid for another day, cannot be refreshed.
    let day = 86_400;
    let old = Claims {
        orig_iat: Some(unix_now() - 91 * day),
        exp: unix_now() + day,
        ..first.clone()
    };
    let old = keys.sign(&old);
    app.me(&old)
        .await
        .context("the old token itself is still valid")?;
    let res = app
        .request(Method::POST, "/api/token/refresh", Some(&old))
        .send()
        .await?;
    let (status, body) = refused(res).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body.error.message.contains("90 days"),
        "{}",
        body.error.message
    );

    // One issued 89 days ago is refreshed only up to the 90th day.
    let near = Claims {
        orig_iat: Some(unix_now() - 89 * day),
        ..first
    };
    let near = app.refresh(&keys.sign(&near)).await?;
    assert!(
        near.expires_at <= unix_now() + day + 5,
        "{}",
        near.expires_at
    );
    Ok(())
}
