//! Serving recordings: what `GET …/recording` says (chapters from the hub's `answering_at`,
//! placed by the manifest's spans), HLS playlists and segments with their caching, removal by
//! the host and by the sweep (retention, `--recordings-max-gb`), and the session's `record` and
//! `videos` fields. The recordings here are written into the media store the way the relay
//! writes them (manifest after files); the relay's own recording is tested in
//! signaling/tests/recording.rs, and end to end with ffmpeg in server/tests/replay.rs.

use std::time::Duration;

use bytes::Bytes;
use oncolive_media::manifest::{Part, Segment, Span, manifest_key, object_key};
use oncolive_media::{Container, Manifest};
use oncolive_server::config::{Config, MediaConfig};
use oncolive_server::domain::Command;
use oncolive_server::model::{Moderation, SessionId, SessionState};
use oncolive_server::recording::{RecordingInfo, RecordingState};
use oncolive_testkit::api::{read, refused};
use oncolive_testkit::{TestApp, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A recording of `segments` 4-second MP4 segments that started `ago_ms` ago, stored whole.
async fn store_recording(
    app: &TestApp,
    id: SessionId,
    segments: u64,
    started_at_ms: i64,
    ended: bool,
) -> anyhow::Result<Manifest> {
    let media = &app.state().media;
    let session = id.to_string();
    let mut manifest = Manifest::new(&session, started_at_ms, 4000);
    let mut part = Part {
        container: Container::Mp4,
        init: "p0-init.mp4".into(),
        init_bytes: 0,
        codecs: "avc1.42e01f,opus".into(),
        video: None,
        audio: None,
        segments: Vec::new(),
    };
    let init = Bytes::from(vec![b'i'; 100]);
    media
        .put(&object_key(&session, &part.init), init.clone())
        .await?;
    part.init_bytes = init.len() as u64;
    for i in 0..segments {
        let name = format!("p0-{i:06}.m4s");
        let data = Bytes::from(vec![i as u8; 1000]);
        media
            .put(&object_key(&session, &name), data.clone())
            .await?;
        part.segments.push(Segment {
            seq: i,
            name,
            start_ms: i * 4000,
            duration_ms: 4000,
            bytes: 1000,
        });
    }
    manifest.parts.push(part);
    manifest.spans.push(Span {
        media_ms: 0,
        wall_ms: started_at_ms,
    });
    if ended {
        manifest.ended_at_ms = Some(started_at_ms + segments as i64 * 4000);
    }
    media
        .put(
            &manifest_key(&session),
            Bytes::from(serde_json::to_vec(&manifest)?),
        )
        .await?;
    Ok(manifest)
}

#[tokio::test]
async fn chapters_hls_and_removal() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    let session = app.live_session(Moderation::Post).await?;
    let id = session.id;
    let res = app
        .get(&format!("/api/sessions/{id}/recording"), None)
        .await?;
    assert_eq!(refused(res).await?.0, StatusCode::NOT_FOUND);

    // Recording since 30 s ago; the expert takes a question up now, about 30 s in.
    let started = now_ms() - 30_000;
    store_recording(&app, id, 8, started, false).await?;
    let (mut patient, _) = app.connect_patient(id).await?;
    patient.consent().await?;
    let asked = patient
        .ask("Does a FIT test replace colonoscopy? My phone is 13812345678")
        .await?;
    // The phone number holds it for a moderator, who publishes the redacted text.
    let (mut moderator, _) = app.connect(id, &session.moderator).await?;
    moderator
        .ok(Command::Approve {
            question: asked.id,
            text: None,
            original: false,
        })
        .await?;
    let (mut expert, _) = app.connect(id, &session.expert).await?;
    expert.ok(Command::Answering { question: asked.id }).await?;
    let answering_at = now_ms();

    let info: RecordingInfo = read(
        app.get(&format!("/api/sessions/{id}/recording"), None)
            .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(info.state, RecordingState::Recording);
    assert_eq!(info.duration_ms, 32_000);
    assert_eq!(info.bytes, 100 + 8 * 1000);
    assert_eq!(info.mime, "video/mp4; codecs=\"avc1.42e01f,opus\"");
    assert_eq!(
        info.hls.as_deref(),
        Some(format!("/api/sessions/{id}/hls/index.m3u8").as_str())
    );
    assert_eq!(info.download, format!("/api/sessions/{id}/recording.mp4"));
    assert_eq!(info.chapters.len(), 1);
    let chapter = &info.chapters[0];
    assert_eq!(chapter.question, asked.id);
    assert!(
        !chapter.text.contains("13812345678"),
        "chapters carry the public text: {}",
        chapter.text
    );
    let expected = (answering_at - started) as u64;
    assert!(
        chapter.at_ms.abs_diff(expected) < 2000,
        "chapter at {} ms, expected about {expected}",
        chapter.at_ms
    );

    // The live playlist slides; the full one starts at the beginning.
    let live = app
        .get(&format!("/api/sessions/{id}/hls/index.m3u8"), None)
        .await?;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(
        live.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(live.headers()["cache-control"], "public, max-age=1");
    let live = live.text().await?;
    assert!(
        live.contains("#EXT-X-MEDIA-SEQUENCE:2\n") && !live.contains("ENDLIST"),
        "{live}"
    );
    let all = app
        .get(&format!("/api/sessions/{id}/hls/all.m3u8"), None)
        .await?
        .text()
        .await?;
    assert!(
        all.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && all.contains("p0-000000.m4s"),
        "{all}"
    );

    // Segments: exactly what was stored, cached for good; nothing outside the manifest.
    let seg = app
        .get(&format!("/api/sessions/{id}/hls/p0-000003.m4s"), None)
        .await?;
    assert_eq!(seg.status(), StatusCode::OK);
    assert_eq!(
        seg.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(seg.bytes().await?, vec![3u8; 1000]);
    for name in ["manifest.json", "p0-000099.m4s", "..%2Fmanifest.json"] {
        let res = app
            .get(&format!("/api/sessions/{id}/hls/{name}"), None)
            .await?;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{name}");
    }

    // Not while live; then the host removes it, and it is gone from every URL.
    let delete = || {
        app.request(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{id}/recording"),
            Some(&app.admin),
        )
    };
    assert_eq!(
        refused(delete().send().await?).await?.0,
        StatusCode::CONFLICT
    );
    let res = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{id}/recording"),
            Some(&session.expert),
        )
        .send()
        .await?;
    assert!(
        matches!(
            res.status(),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED
        ),
        "{}",
        res.status()
    );
    app.set_state(id, &session.expert, SessionState::Ended)
        .await?;
    assert_eq!(delete().send().await?.status(), StatusCode::NO_CONTENT);
    for path in ["recording", "hls/index.m3u8", "hls/p0-000003.m4s"] {
        let res = app.get(&format!("/api/sessions/{id}/{path}"), None).await?;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert!(
        app.state()
            .media
            .list(&format!("recordings/{id}"))
            .await?
            .is_empty()
    );
    let metrics = app.metrics().await?;
    assert!(
        metrics.contains("oncolive_recordings_removed_total{reason=\"deleted\"} 1"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn an_ended_recording_is_a_vod() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    let session = app.live_session(Moderation::Post).await?;
    app.set_state(session.id, &session.expert, SessionState::Ended)
        .await?;
    store_recording(&app, session.id, 3, now_ms() - 20_000, true).await?;
    let info: RecordingInfo = read(
        app.get(&format!("/api/sessions/{}/recording", session.id), None)
            .await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(info.state, RecordingState::Ended);
    assert!(info.ended_at.is_some());
    for playlist in ["index.m3u8", "all.m3u8"] {
        let res = app
            .get(
                &format!("/api/sessions/{}/hls/{playlist}", session.id),
                None,
            )
            .await?;
        assert_eq!(res.headers()["cache-control"], "public, max-age=3600");
        let text = res.text().await?;
        assert!(
            text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && text.ends_with("#EXT-X-ENDLIST\n"),
            "{text}"
        );
        assert_eq!(text.matches("#EXTINF:4.000,").count(), 3);
    }
    // One file: the init, a segment index, the segments; ranges across pieces are exact.
    let file = app
        .get(&format!("/api/sessions/{}/recording.mp4", session.id), None)
        .await?;
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.headers()["content-type"], "video/mp4");
    assert_eq!(file.headers()["accept-ranges"], "bytes");
    assert_eq!(file.headers()["cache-control"], "public, max-age=3600");
    let whole = file.bytes().await?;
    let sidx_len = 12 + 28 + 12 * 3;
    assert_eq!(whole.len(), 100 + sidx_len + 3 * 1000);
    assert!(whole[..100].iter().all(|&b| b == b'i'));
    assert_eq!(&whole[104..108], b"sidx");
    assert!(whole[100 + sidx_len..].starts_with(&[0u8; 1000]));
    let range = app
        .request(
            reqwest::Method::GET,
            &format!("/api/sessions/{}/recording.mp4", session.id),
            None,
        )
        .header("range", "bytes=98-1300")
        .send()
        .await?;
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        range.headers()["content-range"],
        format!("bytes 98-1300/{}", whole.len()).as_str()
    );
    assert_eq!(range.bytes().await?, whole[98..1301]);
    let webm = app
        .get(
            &format!("/api/sessions/{}/recording.webm", session.id),
            None,
        )
        .await?;
    assert_eq!(webm.status(), StatusCode::NOT_FOUND);

    // Deleting the session takes its recording with it.
    let res = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/sessions/{}", session.id),
            Some(&app.admin),
        )
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        app.state()
            .media
            .list(&format!("recordings/{}", session.id))
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn the_sweep_keeps_retention_and_the_disk_bound() -> anyhow::Result<()> {
    let config = Config {
        media: MediaConfig {
            object_store: Some("memory://".into()),
            // Two recordings of 8,100 bytes fit, three do not.
            recordings_max_bytes: Some(17_000),
            recording_retention: Some(Duration::from_secs(10 * 86_400)),
            ..MediaConfig::default()
        },
        ..Config::for_tests()
    };
    let app = spawn_app(config).await?;
    let day = 86_400_000;
    let mut ids = Vec::new();
    // Ended 20, 5, 4 and 3 days ago, and one still being made.
    for (ago, ended) in [
        (20 * day, true),
        (5 * day, true),
        (4 * day, true),
        (3 * day, true),
        (0, false),
    ] {
        let s = app.create_session(Moderation::Post).await?;
        store_recording(&app, s.id, 8, now_ms() - ago - 32_000, ended).await?;
        ids.push(s.id);
    }
    let removed =
        oncolive_server::media_retention::sweep(app.state(), OffsetDateTime::now_utc()).await?;
    // Past retention: the 20-day one; over the bound: the oldest ended ones, never the live one.
    assert_eq!(removed, vec![ids[0], ids[1], ids[2]]);
    for (i, id) in ids.iter().enumerate() {
        let res = app
            .get(&format!("/api/sessions/{id}/recording"), None)
            .await?;
        let kept = res.status() == StatusCode::OK;
        assert_eq!(kept, i >= 3, "recording {i}");
    }
    let metrics = app.metrics().await?;
    for line in [
        "oncolive_recordings 2",
        "oncolive_recordings_bytes 16200",
        "oncolive_recordings_removed_total{reason=\"retention\"} 1",
        "oncolive_recordings_removed_total{reason=\"space\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    Ok(())
}

#[tokio::test]
async fn record_and_videos_fields() -> anyhow::Result<()> {
    let app = spawn_app(Config::for_tests()).await?;
    let new = json!({
        "title": "Lung screening", "expert_name": "Dr. Li",
        "scheduled_start": "2027-01-01T10:00:00Z", "record": false,
        "videos": [{"video": "v1", "when": "before"}],
    });
    let created: Value = read(
        app.post("/api/sessions", Some(&app.admin), &new).await?,
        StatusCode::CREATED,
    )
    .await?;
    assert_eq!(created["session"]["record"], false);
    assert_eq!(
        created["session"]["videos"],
        json!([{"video": "v1", "when": "before"}])
    );
    let id = created["session"]["id"].as_str().unwrap().to_owned();
    // Defaults: recorded, no videos.
    let plain = app.create_session(Moderation::Post).await?;
    let shown: Value = read(
        app.get(&format!("/api/sessions/{}", plain.id), None)
            .await?,
        StatusCode::OK,
    )
    .await?;
    let shown = shown.get("session").unwrap_or(&shown);
    assert_eq!(shown["record"], true);
    assert_eq!(shown["videos"], json!([]));

    let path = format!("/api/sessions/{id}");
    let (app, path) = (&app, &path);
    let patch = |body: Value| async move { app.patch(path, Some(&app.admin), &body).await };
    let changed: Value = read(patch(json!({"record": true})).await?, StatusCode::OK).await?;
    assert_eq!(changed["session"]["record"], true);
    for bad in [
        json!({"videos": [{"video": "../x", "when": "before"}]}),
        json!({"videos": [{"video": "a", "when": "before"}, {"video": "a", "when": "before"}]}),
        json!({"videos": [{"video": "a", "when": "during"}]}),
        json!({"videos": (0..11).map(|i| json!({"video": format!("v{i}"), "when": "after"})).collect::<Vec<_>>()}),
    ] {
        let status = refused(patch(bad.clone()).await?).await?.0;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // After the end, "watch after" videos can still be attached; nothing else changes.
    let expert = created["tokens"]["expert"].as_str().unwrap();
    let sid: SessionId = id.parse()?;
    app.set_state(sid, expert, SessionState::Live).await?;
    app.set_state(sid, expert, SessionState::Ended).await?;
    let after: Value = read(
        patch(json!({"videos": [{"video": "v2", "when": "after"}]})).await?,
        StatusCode::OK,
    )
    .await?;
    assert_eq!(
        after["session"]["videos"],
        json!([{"video": "v2", "when": "after"}])
    );
    let (status, body) = refused(patch(json!({"title": "New"})).await?).await?;
    assert_eq!(status, StatusCode::GONE, "{body:?}");
    Ok(())
}
