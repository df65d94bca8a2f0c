//! The WHIP/WHEP HTTP edge: authorization, request validation, headers.
//! Run inside `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling'`.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;
use oncolive_signaling::{IceServer, RelayConfig};
use reqwest::StatusCode;

async fn post(
    t: &TestRelay,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: String,
) -> Result<(StatusCode, serde_json::Value)> {
    let mut request = t
        .http
        .post(format!("{}{path}", t.base))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn tokens_are_checked_before_anything_else() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let whip = "/api/sessions/s1/whip";
    let whep = "/api/sessions/s1/whep";

    let (status, body) = post(&t, whip, None, "application/sdp", OFFER.into()).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "no token: {status}");
    ensure!(code(&body) == "unauthorized", "{body}");
    let (status, _) = post(&t, whip, Some("nonsense"), "application/sdp", OFFER.into()).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "bad token: {status}");
    let (status, body) = post(
        &t,
        whip,
        Some(&viewer_token("s1")),
        "application/sdp",
        OFFER.into(),
    )
    .await?;
    ensure!(
        status == StatusCode::FORBIDDEN,
        "viewer token on WHIP: {status}"
    );
    ensure!(code(&body) == "forbidden", "{body}");
    let (status, _) = post(
        &t,
        whip,
        Some(&expert("s2")),
        "application/sdp",
        OFFER.into(),
    )
    .await?;
    ensure!(status == StatusCode::FORBIDDEN, "other session: {status}");
    let (status, _) = post(
        &t,
        whep,
        Some(&viewer_token("s2")),
        "application/sdp",
        OFFER.into(),
    )
    .await?;
    ensure!(
        status == StatusCode::FORBIDDEN,
        "other session on WHEP: {status}"
    );
    let (status, body) = post(
        &t,
        "/api/sessions/missing/whep",
        Some(&viewer_token("missing")),
        "application/sdp",
        OFFER.into(),
    )
    .await?;
    ensure!(
        status == StatusCode::NOT_FOUND && code(&body) == "session_not_found",
        "{status} {body}"
    );
    t.auth.ended.lock().expect("lock").insert("s1".into());
    let (status, body) = post(
        &t,
        whep,
        Some(&viewer_token("s1")),
        "application/sdp",
        OFFER.into(),
    )
    .await?;
    ensure!(
        status == StatusCode::GONE && code(&body) == "session_ended",
        "{status} {body}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_offers_get_400_with_a_reason() -> Result<()> {
    let t = spawn_relay(RelayConfig {
        max_sdp_bytes: 4096,
        ..RelayConfig::default()
    })
    .await?;
    let whep = "/api/sessions/s1/whep";
    let token = viewer_token("s1");

    let (status, body) = post(&t, whep, Some(&token), "application/sdp", "hello".into()).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && code(&body) == "invalid_sdp",
        "{status} {body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains("v=0"), "reason: {message}");

    let no_media = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let (status, body) = post(&t, whep, Some(&token), "application/sdp", no_media.into()).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");

    let oversized = format!("{OFFER}{}", "a=x-padding:0123456789\r\n".repeat(400));
    let (status, body) = post(&t, whep, Some(&token), "application/sdp", oversized).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && code(&body) == "sdp_too_large",
        "{status} {body}"
    );

    let (status, body) = post(&t, whep, Some(&token), "text/plain", OFFER.into()).await?;
    ensure!(
        status == StatusCode::UNSUPPORTED_MEDIA_TYPE && code(&body) == "unsupported_media_type",
        "{status} {body}"
    );

    let (status, body) = post(
        &t,
        whep,
        Some(&token),
        "application/sdp",
        String::from_utf8_lossy(&[0xff, 0xfe]).into(),
    )
    .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");

    // A publisher offering no forwardable video codec.
    let theora = OFFER
        .replace("VP8/90000", "theora/90000")
        .replace("a=recvonly", "a=sendonly");
    let (status, body) = post(
        &t,
        "/api/sessions/s1/whip",
        Some(&expert("s1")),
        "application/sdp",
        theora,
    )
    .await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && code(&body) == "unsupported_codec",
        "{status} {body}"
    );
    Ok(())
}

#[tokio::test]
async fn created_resources_carry_the_whip_headers_and_accept_patch_and_delete() -> Result<()> {
    let t = spawn_relay(RelayConfig {
        ice_servers: vec![IceServer {
            urls: vec!["stun:stun.example.org:3478".into()],
        }],
        ..RelayConfig::default()
    })
    .await?;
    let session = "s-headers";
    let viewer = t.view(session).await?;
    ensure!(
        viewer
            .location
            .starts_with(&format!("/api/sessions/{session}/whep/")),
        "{}",
        viewer.location
    );
    ensure!(viewer.publisher_state() == "waiting");

    // Headers of a fresh POST.
    let offer = viewer.pc.local_description().await.context("offer")?.sdp;
    let response = t
        .http
        .post(format!("{}/api/sessions/{session}/whep", t.base))
        .bearer_auth(viewer_token(session))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await?;
    ensure!(response.status() == StatusCode::CREATED);
    let headers = response.headers();
    ensure!(headers["content-type"] == "application/sdp");
    ensure!(headers.contains_key("etag"));
    ensure!(
        headers["link"] == "<stun:stun.example.org:3478>; rel=\"ice-server\"",
        "{:?}",
        headers["link"]
    );
    let exposed = headers["access-control-expose-headers"].to_str()?;
    ensure!(exposed.contains("Location") && exposed.contains("Link") && exposed.contains("ETag"));
    let location = headers["location"].to_str()?.to_owned();
    let url = format!("{}{location}", t.base);

    // Trickle: a late candidate is accepted, under the ICE session's ETag or none.
    let first_etag = headers["etag"].to_str()?.to_owned();
    let candidate = "a=ice-ufrag:{UFRAG}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n";
    let ufrag = viewer
        .pc
        .local_description()
        .await
        .and_then(|d| {
            d.sdp
                .lines()
                .find_map(|l| l.strip_prefix("a=ice-ufrag:").map(str::to_owned))
        })
        .context("ufrag")?;
    let patch = |body: String, if_match: Option<&str>| {
        let mut request = t
            .http
            .patch(&url)
            .bearer_auth(viewer_token(session))
            .header("content-type", "application/trickle-ice-sdpfrag");
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.body(body).send()
    };
    let status = patch(candidate.replace("{UFRAG}", &ufrag), None)
        .await?
        .status();
    ensure!(status == StatusCode::NO_CONTENT, "trickle: {status}");
    let status = patch(candidate.replace("{UFRAG}", &ufrag), Some(&first_etag))
        .await?
        .status();
    ensure!(
        status == StatusCode::NO_CONTENT,
        "trickle with If-Match: {status}"
    );
    let status = patch(candidate.replace("{UFRAG}", "othr"), None)
        .await?
        .status();
    ensure!(
        status == StatusCode::CONFLICT,
        "another ICE session's candidate: {status}"
    );

    // ICE restart: new credentials, the relay's new ones back, a new ETag.
    let restart = |pwd: &str| {
        candidate
            .replace("{UFRAG}", "rstr")
            .replace("m=audio", &format!("a=ice-pwd:{pwd}\r\nm=audio"))
    };
    let response = patch(restart("0123456789abcdefghijkl"), Some("*")).await?;
    ensure!(
        response.status() == StatusCode::OK,
        "restart: {}",
        response.status()
    );
    ensure!(response.headers()["content-type"] == "application/trickle-ice-sdpfrag");
    let new_etag = response.headers()["etag"].to_str()?.to_owned();
    ensure!(
        new_etag != first_etag,
        "the ETag stays {new_etag} across a restart"
    );
    let answered = response.text().await?;
    let relay_ufrag = |fragment: &str| {
        fragment
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:").map(str::to_owned))
    };
    ensure!(
        relay_ufrag(&answered).map(|u| format!("\"{u}\"")) == Some(new_etag.clone())
            && answered.contains("a=ice-pwd:")
            && answered.contains("a=candidate:")
            && answered.contains("a=end-of-candidates"),
        "{answered}"
    );
    // The same credentials again are the current session's: trickle.
    let status = patch(restart("0123456789abcdefghijkl"), Some(&new_etag))
        .await?
        .status();
    ensure!(
        status == StatusCode::NO_CONTENT,
        "trickle with the new credentials: {status}"
    );
    // The old ICE session's ETag and ufrag are refused; the new ones work.
    let status = patch(candidate.replace("{UFRAG}", "rstr"), Some(&first_etag))
        .await?
        .status();
    ensure!(
        status == StatusCode::PRECONDITION_FAILED,
        "old ETag: {status}"
    );
    let status = patch(candidate.replace("{UFRAG}", &ufrag), None)
        .await?
        .status();
    ensure!(status == StatusCode::CONFLICT, "old ufrag: {status}");
    // A malformed restart changes nothing.
    let status = patch(restart("short"), Some("*")).await?.status();
    ensure!(status == StatusCode::BAD_REQUEST, "bad ice-pwd: {status}");
    let status = patch(candidate.replace("{UFRAG}", "rstr"), Some(&new_etag))
        .await?
        .status();
    ensure!(
        status == StatusCode::NO_CONTENT,
        "trickle after a restart: {status}"
    );

    // DELETE needs a token of the session, and only works on the right kind of resource.
    let status = t.http.delete(&url).send().await?.status();
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "DELETE without token: {status}"
    );
    let wrong_kind = url.replace("/whep/", "/whip/");
    let status = t
        .http
        .delete(&wrong_kind)
        .bearer_auth(expert(session))
        .send()
        .await?
        .status();
    ensure!(
        status == StatusCode::NOT_FOUND,
        "DELETE of a viewer on /whip: {status}"
    );
    let status = t
        .http
        .delete(&url)
        .bearer_auth(viewer_token(session))
        .send()
        .await?
        .status();
    ensure!(status == StatusCode::OK, "DELETE: {status}");
    let status = patch(candidate.replace("{UFRAG}", "rstr"), None)
        .await?
        .status();
    ensure!(
        status == StatusCode::NOT_FOUND,
        "PATCH after DELETE: {status}"
    );

    // OPTIONS hands out the ICE servers to token holders only.
    let response = t
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/sessions/{session}/whep", t.base),
        )
        .bearer_auth(viewer_token(session))
        .send()
        .await?;
    ensure!(response.status() == StatusCode::NO_CONTENT && response.headers().contains_key("link"));
    let response = t
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/sessions/{session}/whep", t.base),
        )
        .send()
        .await?;
    ensure!(!response.headers().contains_key("link"));
    viewer.close().await;
    Ok(())
}
