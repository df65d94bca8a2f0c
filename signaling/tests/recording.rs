//! Recording, end to end: an independent WebRTC stack (aiortc, in the venv
//! of `scripts/python-env.sh`) publishes H.264 or VP8 with Opus through WHIP;
//! the relay records into a local media store; `ffprobe` (Debian's ffmpeg)
//! reads back each part (init + its segments, concatenated).
//!
//! Run inside a loopback-only namespace:
//! `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling --test recording'`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::*;
use oncolive_media::MediaStore;
use oncolive_media::manifest::{self, Container, Manifest};
use oncolive_signaling::{RecordingConfig, RelayConfig};
use oncolive_testkit::aiortc::PyPublisher;
use oncolive_testkit::ffprobe::{Probed, decodes, probe};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const TARGET: Duration = Duration::from_secs(4);

/// One aiortc encoder at a time: each takes most of a core at 640×360 and 30 fps, and a
/// starved encoder sends late, sparse frames that would look like a recorder's fault.
static ENCODER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The aiortc publisher of the testkit, on the test relay's WHIP endpoint.
async fn publish(base: &str, session: &str, codec: &str, seconds: f64) -> Result<PyPublisher> {
    let url = format!("{base}/api/sessions/{session}/whip");
    PyPublisher::start(&url, &expert(session), codec, seconds).await
}

fn recording_config(dir: &Path) -> Result<RelayConfig> {
    let store = MediaStore::open(None, dir)?;
    Ok(RelayConfig {
        recording: Some(RecordingConfig {
            store,
            target_segment: TARGET,
        }),
        ..RelayConfig::default()
    })
}

fn read_manifest(dir: &Path, session: &str) -> Result<Manifest> {
    let bytes = std::fs::read(dir.join(manifest::manifest_key(session)))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Concatenates each part (init + segments) into a file and probes it.
fn probe_recording(dir: &Path, manifest: &Manifest) -> Result<Vec<Probed>> {
    let mut probed = Vec::new();
    for part in &manifest.parts {
        let mut file =
            std::fs::read(dir.join(manifest::object_key(&manifest.session, &part.init)))?;
        for segment in &part.segments {
            let bytes =
                std::fs::read(dir.join(manifest::object_key(&manifest.session, &segment.name)))
                    .with_context(|| format!("{} is listed but not stored", segment.name))?;
            ensure!(bytes.len() as u64 == segment.bytes, "{} size", segment.name);
            file.extend_from_slice(&bytes);
        }
        let path: PathBuf = dir.join(format!(
            "whole-{}.{}",
            part.init,
            part.container.extension()
        ));
        std::fs::write(&path, file)?;
        probed.push(probe(&path)?);
        decodes(&path)?;
    }
    Ok(probed)
}

/// One video and one audio stream, no gap over one segment, the right codecs;
/// returns the total duration.
fn check_recording(dir: &Path, session: &str, container: Container) -> Result<(Manifest, f64)> {
    let manifest = read_manifest(dir, session)?;
    ensure!(!manifest.parts.is_empty(), "no part: {manifest:?}");
    let probed = probe_recording(dir, &manifest)?;
    let mut total = 0.0;
    for (part, probed) in manifest.parts.iter().zip(&probed) {
        ensure!(part.container == container, "{:?}", part.container);
        let expected = match container {
            Container::Mp4 => ["h264", "opus"],
            Container::Webm => ["vp8", "opus"],
        };
        ensure!(probed.codecs == expected, "streams {:?}", probed.codecs);
        ensure!(
            probed.streams.len() == 2,
            "packets of {} streams",
            probed.streams.len()
        );
        for (first, last, gap) in &probed.streams {
            ensure!(
                *gap < TARGET.as_secs_f64(),
                "a gap of {gap:.3} s (stream {first}..{last})"
            );
        }
        // Segments tile the part.
        for pair in part.segments.windows(2) {
            let end = pair[0].start_ms + u64::from(pair[0].duration_ms);
            ensure!(
                pair[1].start_ms.abs_diff(end) <= 100,
                "{} ends at {end}, {} starts at {}",
                pair[0].name,
                pair[1].name,
                pair[1].start_ms
            );
        }
        total += probed.duration();
    }
    println!(
        "{session}: {} part(s), {} segment(s), {:.3} s by ffprobe, manifest {} ms, {} bytes, codecs {}",
        manifest.parts.len(),
        manifest.segments().count(),
        total,
        manifest.duration_ms(),
        manifest.bytes(),
        manifest.parts[0].codecs,
    );
    Ok((manifest, total))
}

fn within(measured: f64, expected: f64, fraction: f64) -> bool {
    (measured - expected).abs() <= expected * fraction
}

async fn broadcast_is_recorded(codec: &str, container: Container) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let relay = spawn_relay(recording_config(dir.path())?).await?;
    let session = format!("rec-{codec}");
    let publisher = publish(&relay.base, &session, codec, 12.0).await?;
    let sent = publisher.finish().await?;
    relay.relay.end_session(&session).await;

    let (manifest, duration) = check_recording(dir.path(), &session, container)?;
    ensure!(manifest.ended(), "not marked ended");
    ensure!(
        manifest.parts.len() == 1 && manifest.spans.len() == 1,
        "{manifest:?}"
    );
    ensure!(
        within(duration, sent, 0.10),
        "recorded {duration:.3} s of {sent:.3} s sent"
    );
    ensure!(
        manifest.segments().count() >= 3,
        "segments of ~4 s: {manifest:?}"
    );
    let codecs = &manifest.parts[0].codecs;
    match container {
        Container::Mp4 => ensure!(
            codecs.starts_with("avc1.42") && codecs.ends_with(",opus"),
            "{codecs}"
        ),
        Container::Webm => ensure!(codecs == "vp8,opus", "{codecs}"),
    }
    let video = manifest.parts[0].video.as_ref().context("video track")?;
    ensure!(
        (video.width, video.height) == (Some(640), Some(360)),
        "{video:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h264_broadcast_is_recorded_as_fragmented_mp4() -> Result<()> {
    let _one = ENCODER.lock().await;
    broadcast_is_recorded("h264", Container::Mp4).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vp8_broadcast_is_recorded_as_webm() -> Result<()> {
    let _one = ENCODER.lock().await;
    broadcast_is_recorded("vp8", Container::Webm).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_killed_mid_broadcast_leaves_a_playable_recording() -> Result<()> {
    let _one = ENCODER.lock().await;
    let dir = tempfile::tempdir()?;
    let relay = spawn_relay(recording_config(dir.path())?).await?;
    let session = "rec-killed";
    let mut live = relay.relay.publisher_live(session);
    let publisher = publish(&relay.base, session, "h264", 60.0).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let was_live = publisher.kill().await?;
    // The relay notices when ICE consent stops (about 5 s) and closes the segment.
    tokio::time::timeout(Duration::from_secs(20), live.wait_for(|live| !*live)).await??;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (manifest, duration) = check_recording(dir.path(), session, Container::Mp4)?;
    ensure!(!manifest.ended(), "only end_session ends it");
    ensure!(
        within(duration, was_live, 0.10),
        "recorded {duration:.3} s of {was_live:.3} s live"
    );
    relay.relay.end_session(session).await;
    ensure!(read_manifest(dir.path(), session)?.ended());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_that_reconnects_continues_the_recording() -> Result<()> {
    let _one = ENCODER.lock().await;
    let dir = tempfile::tempdir()?;
    let relay = spawn_relay(recording_config(dir.path())?).await?;
    let session = "rec-again";
    let first = publish(&relay.base, session, "vp8", 6.0).await?;
    let sent_first = first.finish().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = publish(&relay.base, session, "vp8", 6.0).await?;
    let sent_second = second.finish().await?;
    relay.relay.end_session(session).await;

    let (manifest, duration) = check_recording(dir.path(), session, Container::Webm)?;
    ensure!(manifest.parts.len() == 1, "same codec and size: one part");
    ensure!(manifest.spans.len() == 2, "{:?}", manifest.spans);
    let (a, b) = (manifest.spans[0], manifest.spans[1]);
    // The second span starts where the first one's media ended, not after the pause.
    ensure!(
        within(b.media_ms as f64 / 1000.0, sent_first, 0.10),
        "second span at {} ms after {sent_first:.3} s",
        b.media_ms
    );
    ensure!(
        b.wall_ms - a.wall_ms >= (sent_first * 1000.0) as i64 + 1500,
        "{a:?} {b:?}"
    );
    let sent = sent_first + sent_second;
    ensure!(
        within(duration, sent, 0.10),
        "recorded {duration:.3} s of {sent:.3} s"
    );
    // Hub time maps into the second span.
    let answered = b.wall_ms + 2000;
    ensure!(manifest.media_ms_at(answered) == Some(b.media_ms + 2000));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_the_host_does_not_record_leaves_nothing() -> Result<()> {
    let _one = ENCODER.lock().await;
    let dir = tempfile::tempdir()?;
    let relay = spawn_relay(recording_config(dir.path())?).await?;
    let session = "rec-off";
    relay
        .auth
        .not_recorded
        .lock()
        .expect("lock")
        .insert(session.to_owned());
    let publisher = publish(&relay.base, session, "h264", 3.0).await?;
    publisher.finish().await?;
    relay.relay.end_session(session).await;
    ensure!(
        !dir.path()
            .join(manifest::recording_prefix(session))
            .exists()
    );
    Ok(())
}

/// The child side of the crash test: a relay recording into the directory
/// named by `ONCOLIVE_RECORDING_CHILD`, printing its base URL, forever.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by a_relay_killed_mid_recording_leaves_only_complete_segments"]
async fn relay_child_process() -> Result<()> {
    let Some(dir) = std::env::var_os("ONCOLIVE_RECORDING_CHILD") else {
        return Ok(());
    };
    let relay = spawn_relay(recording_config(Path::new(&dir))?).await?;
    println!("BASE {}", relay.base);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_killed_mid_recording_leaves_only_complete_segments() -> Result<()> {
    let _one = ENCODER.lock().await;
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "relay_child_process", "--ignored", "--nocapture"])
        .env("ONCOLIVE_RECORDING_CHILD", dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let base = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .context("the child relay exited")?;
        if let Some(base) = line.strip_prefix("BASE ") {
            break base.to_owned();
        }
    };
    let session = "rec-crash";
    let publisher = publish(&base, session, "h264", 60.0).await?;
    tokio::time::sleep(Duration::from_secs(11)).await;
    // kill -9 of the recording process.
    child.start_kill()?;
    child.wait().await?;
    let was_live = publisher.live_at.elapsed().as_secs_f64();
    publisher.kill().await?;

    let (manifest, duration) = check_recording(dir.path(), session, Container::Mp4)?;
    ensure!(!manifest.ended());
    let lost = was_live - duration;
    // At most the open segment: the target plus the wait for its keyframe.
    if lost > TARGET.as_secs_f64() + 1.5 {
        bail!("lost {lost:.3} s of {was_live:.3} s");
    }
    println!("crash lost {lost:.3} s of {was_live:.3} s");

    // A relay of another process ends it: the manifest is marked ended.
    let relay = spawn_relay(recording_config(dir.path())?).await?;
    relay.relay.end_session(session).await;
    let ended = read_manifest(dir.path(), session)?;
    ensure!(ended.ended() && ended.parts == manifest.parts);
    Ok(())
}
