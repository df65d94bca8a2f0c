//! The recording end to end through the real server: aiortc publishes H.264 + Opus through the
//! server's WHIP endpoint for 12 s; ffmpeg reads the live HLS playlist while the broadcast runs;
//! the session ends; ffmpeg reads the VOD playlist, and ffprobe the single-file download. The
//! media store is a directory, or with `ONCOLIVE_TEST_STORE=s3` a private S3 server (moto).
//!
//! Run inside a loopback-only namespace:
//! `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-server --test replay'`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use oncolive_media::Container;
use oncolive_server::config::Config;
use oncolive_server::domain::Command;
use oncolive_server::model::{Moderation, SessionState};
use oncolive_server::protocol::ErrorCode;
use oncolive_server::recording::{RecordingInfo, RecordingState};
use oncolive_testkit::aiortc::PyPublisher;
use oncolive_testkit::api::read;
use oncolive_testkit::ffprobe::{decodes, probe};
use oncolive_testkit::s3::{TestS3, suite_uses_s3};
use oncolive_testkit::{TestApp, spawn_app};
use reqwest::StatusCode;

const SEGMENT: Duration = Duration::from_secs(2);

/// The server on a local media directory, or on moto.
async fn app(dir: &Path) -> anyhow::Result<(TestApp, Option<TestS3>)> {
    let mut config = Config::for_tests();
    config.data_dir = dir.join("data");
    config.media.target_segment = SEGMENT;
    let s3 = if suite_uses_s3() {
        let s3 = TestS3::start()?;
        s3.create_bucket("replay").await?;
        config.media.object_store = Some(s3.url("replay", "oncolive"));
        Some(s3)
    } else {
        config.media.object_store = Some(format!("file://{}", dir.join("media").display()));
        None
    };
    Ok((spawn_app(config).await?, s3))
}

async fn recording(app: &TestApp, id: &str) -> anyhow::Result<Option<RecordingInfo>> {
    let res = app
        .get(&format!("/api/sessions/{id}/recording"), None)
        .await?;
    if res.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    Ok(Some(read(res, StatusCode::OK).await?))
}

/// Polls the recording until `done` holds (bounded).
async fn wait_recording(
    app: &TestApp,
    id: &str,
    done: impl Fn(&RecordingInfo) -> bool,
) -> anyhow::Result<RecordingInfo> {
    for _ in 0..150 {
        if let Some(info) = recording(app, id).await?
            && done(&info)
        {
            return Ok(info);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the recording of {id} did not get there")
}

/// ffmpeg copies `seconds` of `url` (a live playlist: it starts near the live edge) into `out`.
async fn copy_hls(url: &str, seconds: u32, out: &Path) -> anyhow::Result<()> {
    let run = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i", url])
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "matroska"])
        .arg(out)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .context("ffmpeg did not finish reading the live playlist")??;
    ensure!(
        out.status.success(),
        "ffmpeg on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_reads_the_live_playlist_during_the_broadcast_and_the_vod_after()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (app, _s3) = app(dir.path()).await?;
    let session = app.live_session(Moderation::Pre).await?;
    let id = session.id.to_string();
    let whip = format!("{}/api/sessions/{id}/whip", app.url);
    let publisher = PyPublisher::start(&whip, &session.expert, "h264", 12.0).await?;

    // ---- live: the sliding playlist, read by ffmpeg while the publisher sends ----
    let live = wait_recording(&app, &id, |r| {
        r.duration_ms >= 3 * SEGMENT.as_millis() as u64
    })
    .await?;
    ensure!(live.state == RecordingState::Recording, "{live:?}");
    let hls = live.hls.clone().context("an MP4 recording has HLS")?;
    let res = app.get(&hls, None).await?;
    ensure!(res.status() == StatusCode::OK);
    ensure!(
        res.headers()["cache-control"] == "public, max-age=1",
        "{:?}",
        res.headers()
    );
    let playlist = res.text().await?;
    ensure!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let copied = dir.path().join("live.mkv");
    copy_hls(&format!("{}{hls}", app.url), 4, &copied).await?;
    let probed = probe(&copied)?;
    ensure!(probed.codecs == ["h264", "opus"], "{probed:?}");
    ensure!(probed.streams.len() == 2, "{probed:?}");
    ensure!(probed.duration() >= 3.0, "live copy of {probed:?}");
    decodes(&copied)?;
    // ffmpeg waited for segments that were not written yet: the broadcast was still on.
    ensure!(recording(&app, &id).await?.context("recording")?.state == RecordingState::Recording);

    // ---- the end: the VOD playlist and the download ----
    let sent = publisher.finish().await?;
    app.set_state(session.id, &session.expert, SessionState::Ended)
        .await?;
    let ended = wait_recording(&app, &id, |r| r.state == RecordingState::Ended).await?;
    let vod = format!("{}{}", app.url, ended.hls_all.clone().context("hls_all")?);
    let playlist = reqwest::get(&vod).await?.text().await?;
    ensure!(
        playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD") && playlist.contains("#EXT-X-ENDLIST"),
        "{playlist}"
    );
    for (what, input) in [
        ("VOD playlist", vod),
        ("download", format!("{}{}", app.url, ended.download)),
    ] {
        let probed = probe(&input)?;
        ensure!(probed.codecs == ["h264", "opus"], "{what}: {probed:?}");
        ensure!(
            (probed.duration() - sent).abs() <= sent * 0.10,
            "{what}: {:.3} s of {sent:.3} s sent",
            probed.duration()
        );
        ensure!(
            probed.largest_gap() < SEGMENT.as_secs_f64(),
            "{what}: a gap of {:.3} s",
            probed.largest_gap()
        );
        decodes(&input)?;
        if what == "download" {
            // A player shows the length and can seek: the file declares its duration.
            let declared = probed
                .declared
                .context("the download declares no duration")?;
            ensure!(
                (declared - sent).abs() <= sent * 0.10,
                "the download declares {declared:.3} s of {sent:.3} s sent"
            );
        }
        println!(
            "{what}: {:.3} s of {sent:.3} s sent (declared {:?}), largest gap {:.3} s, streams {:?}",
            probed.duration(),
            probed.declared,
            probed.largest_gap(),
            probed.streams
        );
    }
    Ok(())
}

/// A codec change starts a new part: aiortc publishes H.264, then VP8 (a second device), and a
/// question is taken up during the VP8 stretch. Every part is served as its own file, on the
/// recording's timeline, and the chapter names its part.
#[tokio::test(flavor = "multi_thread")]
async fn a_recording_in_two_parts_serves_each_part_and_chapters_name_theirs() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let (app, _s3) = app(dir.path()).await?;
    let session = app.live_session(Moderation::Post).await?;
    let id = session.id.to_string();
    let whip = format!("{}/api/sessions/{id}/whip", app.url);
    let (mut patient, _) = app.connect_patient(session.id).await?;
    patient.consent().await?;
    let asked = patient
        .ask("How often should a smoker over 50 have a low-dose CT?")
        .await?;

    let first = PyPublisher::start(&whip, &session.expert, "h264", 6.0).await?;
    let mut sent = first.finish().await?;
    let second = PyPublisher::start(&whip, &session.expert, "vp8", 6.0).await?;
    wait_recording(&app, &id, |r| r.parts.len() == 2).await?;
    let (mut expert, _) = app.connect(session.id, &session.expert).await?;
    expert.ok(Command::Answering { question: asked.id }).await?;
    sent += second.finish().await?;
    app.set_state(session.id, &session.expert, SessionState::Ended)
        .await?;
    let ended = wait_recording(&app, &id, |r| r.state == RecordingState::Ended).await?;

    let kinds: Vec<(Container, &str)> = ended
        .parts
        .iter()
        .map(|p| (p.container, p.codecs.split(',').next().unwrap_or("")))
        .collect();
    ensure!(kinds.len() == 2, "{:?}", ended.parts);
    ensure!(
        kinds[0].0 == Container::Mp4 && kinds[0].1.starts_with("avc1."),
        "{kinds:?}"
    );
    ensure!(kinds[1] == (Container::Webm, "vp8"), "{kinds:?}");
    ensure!(ended.download == format!("/api/sessions/{id}/recording.mp4"));
    let chapter = ended
        .chapters
        .first()
        .context("the answered question is a chapter")?;
    ensure!(
        chapter.part == ended.parts[1].index,
        "{chapter:?} {:?}",
        ended.parts
    );
    ensure!(
        chapter.at_ms >= ended.parts[1].start_ms,
        "{chapter:?} {:?}",
        ended.parts
    );

    let mut recorded = 0.0;
    for (part, codec) in ended.parts.iter().zip(["h264", "vp8"]) {
        let url = format!("{}{}", app.url, part.download);
        let probed = probe(&url)?;
        ensure!(probed.codecs == [codec, "opus"], "{url}: {probed:?}");
        let first_packet = probed.streams.iter().map(|s| s.0).fold(f64::MAX, f64::min);
        let start = part.start_ms as f64 / 1000.0;
        ensure!(
            (first_packet - start).abs() < 0.1,
            "{url}: the file starts at {first_packet:.3} s, the part at {start:.3} s"
        );
        let end = start + part.duration_ms as f64 / 1000.0;
        let declared = probed.declared.context("no declared length")?;
        ensure!(
            (declared - end).abs() < 0.2,
            "{url} declares {declared:.3} s; the part ends at {end:.3} s"
        );
        ensure!(
            probed.largest_gap() < SEGMENT.as_secs_f64(),
            "{url}: {probed:?}"
        );
        decodes(&url)?;
        recorded += probed.duration();
        println!(
            "part {} ({codec}): {start:.3}–{end:.3} s, ffprobe {:.3} s, declared {declared:.3} s",
            part.index,
            probed.duration()
        );
    }
    ensure!(
        (recorded - sent).abs() <= sent * 0.10,
        "the parts hold {recorded:.3} s of {sent:.3} s sent"
    );

    // The wrong container or a part that does not exist: 404 with what there is.
    for path in [
        format!("/api/sessions/{id}/recording.mp4?part=1"),
        format!("/api/sessions/{id}/recording.webm"),
        format!("/api/sessions/{id}/recording.mp4?part=9"),
    ] {
        let res = app.get(&path, None).await?;
        ensure!(
            res.status() == StatusCode::NOT_FOUND,
            "{path}: {}",
            res.status()
        );
    }
    let res = app
        .get(
            &format!("/api/sessions/{id}/recording.mp4?part=first"),
            None,
        )
        .await?;
    let (status, body) = oncolive_testkit::api::refused(res).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && body.error.code == ErrorCode::BadRequest,
        "{status} {body:?}"
    );
    Ok(())
}
