//! Media through the relay with real `webrtc` peers on loopback.
//! Run inside `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling'`.

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use oncolive_signaling::RelayConfig;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

fn video_markers(received: &[Received], from: u32) -> Vec<u32> {
    received
        .iter()
        .filter(|r| r.kind == Kind::Video && r.marker >= from)
        .map(|r| r.marker)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_viewers_receive_the_publishers_packets_in_order() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-fanout";
    let mut live = t.relay.publisher_live(session);
    ensure!(!*live.borrow(), "nobody publishes yet");

    let publisher = t.publish(session, VideoCodec::Vp8).await?;
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let viewer = t.view(session).await?;
        viewers.push(viewer);
    }
    publisher.wait_connected().await?;
    for v in &mut viewers {
        v.wait_connected().await?;
    }
    let mut refs: Vec<&mut Viewer> = viewers.iter_mut().collect();
    let first = warm_up(&publisher, &mut refs, 0).await?;
    tokio::time::timeout(PATIENCE, live.wait_for(|l| *l)).await??;

    let last = first + 100;
    send_batch(&publisher, first, last).await?;
    for v in &mut viewers {
        let got = collect_until(v, last - 1).await;
        let video = video_markers(&got, first);
        let audio: Vec<u32> = got
            .iter()
            .filter(|r| r.kind == Kind::Audio && r.marker >= first)
            .map(|r| r.marker)
            .collect();
        let expected: Vec<u32> = (first..last).collect();
        ensure!(video == expected, "video markers {video:?}");
        ensure!(audio == expected, "audio markers {audio:?}");
        ensure!(got.iter().any(|r| r.mime.eq_ignore_ascii_case("video/VP8")));
        ensure!(
            got.iter()
                .any(|r| r.mime.eq_ignore_ascii_case("audio/opus"))
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_viewers_get_few_keyframe_requests() -> Result<()> {
    let interval = Duration::from_secs(3);
    let t = spawn_relay(RelayConfig {
        keyframe_min_interval: interval,
        ..RelayConfig::default()
    })
    .await?;
    let session = "s-pli";
    let publisher = t.publish(session, VideoCodec::Vp8).await?;
    publisher.wait_connected().await?;
    let mut first = t.view(session).await?;
    first.wait_connected().await?;
    let marker = warm_up(&publisher, &mut [&mut first], 0).await?;

    // A late joiner makes the relay ask the publisher for a keyframe.
    let before = publisher.keyframe_requests();
    let started = std::time::Instant::now();
    let late = t.view(session).await?;
    late.wait_connected().await?;
    for marker in (marker..).take((PATIENCE.as_millis() / 20) as usize) {
        if publisher.keyframe_requests() > before {
            break;
        }
        publisher.send(marker).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(
        publisher.keyframe_requests() > before,
        "no PLI after a viewer joined"
    );

    // Many joiners: the PLIs are coalesced to one per interval (plus one trailing).
    let joiners = 8;
    let mut crowd = Vec::new();
    for _ in 0..joiners {
        crowd.push(t.view(session).await?);
    }
    for v in &mut crowd {
        v.wait_connected().await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elapsed = started.elapsed();
    let plis = publisher.keyframe_requests() - before;
    let bound = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as usize + 1;
    ensure!(
        plis >= 1 && plis <= bound,
        "{plis} PLIs for {} joiners in {elapsed:?} (bound {bound})",
        joiners + 1
    );
    ensure!(plis < joiners, "{plis} PLIs for {joiners} joiners");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_delivery_at_once() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-delete";
    let publisher = t.publish(session, VideoCodec::Vp8).await?;
    let mut leaving = t.view(session).await?;
    let mut staying = t.view(session).await?;
    publisher.wait_connected().await?;
    leaving.wait_connected().await?;
    staying.wait_connected().await?;
    let first = warm_up(&publisher, &mut [&mut leaving, &mut staying], 0).await?;

    let response = t
        .http
        .delete(format!("{}{}", t.base, leaving.location))
        .bearer_auth(leaving.token())
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "DELETE: {}",
        response.status()
    );
    // A second DELETE finds nothing.
    let again = t
        .http
        .delete(format!("{}{}", t.base, leaving.location))
        .bearer_auth(leaving.token())
        .send()
        .await?;
    ensure!(again.status() == reqwest::StatusCode::NOT_FOUND);

    leaving.drain();
    let last = first + 50;
    send_batch(&publisher, first, last).await?;
    let got = collect_until(&mut staying, last - 1).await;
    ensure!(
        video_markers(&got, first).len() == 50,
        "the staying viewer lost packets"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let leaked = video_markers(&leaving.drain(), first);
    ensure!(leaked.is_empty(), "a deleted viewer still got {leaked:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_publisher_replaces_the_old_and_viewers_keep_receiving() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-replace";
    // The viewer comes first: it waits for the expert.
    let mut viewer = t.view(session).await?;
    ensure!(
        viewer.publisher_state() == "waiting",
        "header {}",
        viewer.publisher_state()
    );
    let mut live = t.relay.publisher_live(session);

    let first_pub = t.publish(session, VideoCodec::Vp8).await?;
    first_pub.wait_connected().await?;
    viewer.wait_connected().await?;
    let marker = warm_up(&first_pub, &mut [&mut viewer], 0).await?;
    tokio::time::timeout(PATIENCE, live.wait_for(|l| *l)).await??;
    send_batch(&first_pub, marker, marker + 20).await?;
    let before = collect_until(&mut viewer, marker + 19).await;
    let last_seq = before
        .iter()
        .rev()
        .find(|r| r.kind == Kind::Video)
        .map(|r| r.seq)
        .unwrap_or_default();

    let second_pub = t.publish(session, VideoCodec::Vp8).await?;
    second_pub.wait_connected().await?;
    // The old publisher's packets no longer reach anyone.
    send_batch(&first_pub, 10_000, 10_010).await?;
    let marker = warm_up(&second_pub, &mut [&mut viewer], 20_000).await?;
    send_batch(&second_pub, marker, marker + 50).await?;
    let after = collect_until(&mut viewer, marker + 49).await;
    ensure!(
        video_markers(&after, marker) == (marker..marker + 50).collect::<Vec<_>>(),
        "second publisher's packets missing"
    );
    ensure!(
        !after.iter().any(|r| (10_000..10_010).contains(&r.marker)),
        "the replaced publisher still reaches viewers"
    );
    // Sequence numbers continue across the change (no 2^15 jump).
    let first_new = after
        .iter()
        .find(|r| r.kind == Kind::Video)
        .map(|r| r.seq)
        .unwrap_or_default();
    let gap = first_new.wrapping_sub(last_seq);
    ensure!(
        gap > 0 && gap < 1000,
        "sequence jumped by {gap} across the publisher change"
    );

    // The publisher leaves: viewers stay, live goes false.
    let response = t
        .http
        .delete(format!("{}{}", t.base, second_pub.location))
        .bearer_auth(expert(session))
        .send()
        .await?;
    ensure!(response.status().is_success());
    tokio::time::timeout(PATIENCE, live.wait_for(|l| !*l)).await??;
    ensure!(viewer.state() == RTCPeerConnectionState::Connected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_publisher_after_vp8_viewers_switches_the_room_codec() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-h264";
    let mut viewer = t.view(session).await?;
    let publisher = t.publish(session, VideoCodec::H264).await?;
    publisher.wait_connected().await?;
    viewer.wait_connected().await?;
    let first = warm_up(&publisher, &mut [&mut viewer], 0).await?;
    send_batch(&publisher, first, first + 10).await?;
    let got = collect_until(&mut viewer, first + 9).await;
    ensure!(video_markers(&got, first).len() == 10);
    ensure!(
        got.iter()
            .filter(|r| r.kind == Kind::Video)
            .all(|r| r.mime.eq_ignore_ascii_case("video/H264")),
        "{got:?}"
    );

    // A viewer that cannot decode H.264 is told so instead of getting a black picture.
    let refused = t.view_vp8_only(session).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    ensure!(
        message.contains("400") && message.contains("unsupported_codec"),
        "VP8-only viewer: {message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_closes_every_peer() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-end";
    let publisher = t.publish(session, VideoCodec::Vp8).await?;
    let mut viewers = vec![t.view(session).await?, t.view(session).await?];
    publisher.wait_connected().await?;
    for v in &mut viewers {
        v.wait_connected().await?;
    }
    let live = t.relay.publisher_live(session);

    t.auth
        .ended
        .lock()
        .expect("lock")
        .insert(session.to_owned());
    t.relay.end_session(session).await;
    ensure!(!*live.borrow(), "still live after end_session");
    let gone = [
        RTCPeerConnectionState::Disconnected,
        RTCPeerConnectionState::Failed,
        RTCPeerConnectionState::Closed,
    ];
    for v in &mut viewers {
        v.wait_state(&gone).await?;
    }
    publisher.wait_state(&gone).await?;

    // Later requests get what the authorizer says: 410.
    let err = t
        .view(session)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(err.contains("410"), "WHEP after the end: {err}");
    Ok(())
}

/// One viewer's link loses 30 % of the media sent to it. The relay writes to every viewer
/// without waiting for any of them (UDP never pushes back, and each viewer's retransmissions
/// come from its own NACK buffer), so the others still get every packet, in order, while the
/// lossy one still gets most of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_viewer_does_not_hurt_the_others() -> Result<()> {
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-lossy";
    let publisher = t.publish(session, VideoCodec::Vp8).await?;
    let proxy = LossyProxy::start(3).await?;
    let mut viewers = vec![t.view_through(session, &proxy).await?];
    for _ in 0..2 {
        viewers.push(t.view(session).await?);
    }
    publisher.wait_connected().await?;
    for v in &mut viewers {
        v.wait_connected().await?;
    }
    let mut refs: Vec<&mut Viewer> = viewers.iter_mut().collect();
    let first = warm_up(&publisher, &mut refs, 0).await?;

    let last = first + 150;
    send_batch(&publisher, first, last).await?;
    let expected: Vec<u32> = (first..last).collect();
    for v in &mut viewers[1..] {
        let got = collect_until(v, last - 1).await;
        let video = video_markers(&got, first);
        ensure!(video == expected, "a healthy viewer got {video:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lossy = video_markers(&viewers[0].drain(), first);
    let dropped = proxy.dropped();
    ensure!(dropped > 0, "the proxy dropped nothing");
    ensure!(
        lossy.len() >= expected.len() / 3,
        "the lossy viewer got only {} of {} packets",
        lossy.len(),
        expected.len()
    );
    Ok(())
}

/// An audio-only WHEP offer (a weak link, or a patient who chose "audio only") gets Opus and
/// nothing else. Every UDP datagram the relay sends that viewer (RTP with its SRTP tag and
/// header extension, RTCP, STUN consent checks) is counted at a UDP hop for at least 10 s while
/// the publisher sends about 800 kbit/s of video besides its audio: with IPv4 and UDP headers
/// added it stays under 64 kbit/s. Switching back is a new WHEP subscription with video after
/// a DELETE of the audio-only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_only_viewer_gets_only_opus_under_64_kbits() -> Result<()> {
    /// Chromium's default Opus bitrate for a mono voice, 32 kbit/s: 80 bytes every 20 ms.
    const OPUS_BYTES: usize = 80;
    const FRAME: Duration = Duration::from_millis(20);
    const IPV4_UDP_HEADERS: u64 = 20 + 8;
    let t = spawn_relay(RelayConfig::default()).await?;
    let session = "s-audio-only";
    let publisher = t.publish(session, VideoCodec::Vp8).await?;
    let hop = LossyProxy::start(0).await?;
    let token = fresh_viewer_token(session);
    let mut listener = t
        .media
        .viewer(session, &token)
        .audio_only()
        .through(&hop)
        .connect()
        .await?;
    publisher.wait_connected().await?;
    listener.wait_connected().await?;

    let mut ticks = tokio::time::interval(FRAME);
    let mut marker = 0u32;
    let mut send_frame = async |marker: u32| -> Result<()> {
        ticks.tick().await;
        // Two 1000-byte video packets per frame: 50 frames/s, about 800 kbit/s.
        let video = payload(Kind::Video, marker, 0, 1000);
        publisher
            .write_video(video.clone(), marker.wrapping_mul(1800), false)
            .await?;
        publisher
            .write_video(video, marker.wrapping_mul(1800), true)
            .await?;
        let audio = payload(Kind::Audio, marker, 0, OPUS_BYTES);
        publisher.write_audio(audio, marker.wrapping_mul(960)).await
    };
    // Until the listener hears the publisher.
    loop {
        ensure!(marker < 750, "no audio reached the audio-only viewer");
        send_frame(marker).await?;
        marker += 1;
        if listener.drain().iter().any(|r| r.kind == Kind::Audio) {
            break;
        }
    }

    let (packets_before, bytes_before) = hop.sent_to_viewer();
    let started = std::time::Instant::now();
    let first = marker;
    while started.elapsed() < Duration::from_secs(10) {
        send_frame(marker).await?;
        marker += 1;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (packets_after, bytes_after) = hop.sent_to_viewer();
    let (packets, bytes) = (packets_after - packets_before, bytes_after - bytes_before);
    let above_udp = bytes as f64 * 8.0 / elapsed;
    let on_the_wire = (bytes + packets * IPV4_UDP_HEADERS) as f64 * 8.0 / elapsed;
    println!(
        "audio-only viewer: {packets} datagrams, {bytes} bytes in {elapsed:.1} s: \
         {:.1} kbit/s above UDP, {:.1} kbit/s with IPv4+UDP headers \
         ({OPUS_BYTES}-byte Opus payloads every 20 ms)",
        above_udp / 1000.0,
        on_the_wire / 1000.0
    );
    let got = listener.drain();
    let video = got.iter().filter(|r| r.kind.is_video()).count();
    ensure!(
        video == 0,
        "the audio-only viewer got {video} video packets"
    );
    let audio = got
        .iter()
        .filter(|r| r.kind == Kind::Audio && r.marker >= first)
        .count();
    let sent = (marker - first) as usize;
    ensure!(
        audio * 10 >= sent * 9,
        "the audio-only viewer got {audio} of {sent} audio packets"
    );
    ensure!(
        on_the_wire < 64_000.0,
        "the audio-only viewer costs {on_the_wire:.0} bit/s"
    );

    // Back to video: the audio-only subscription goes, one with video comes, same token.
    ensure!(
        listener.delete().await?.is_success(),
        "DELETE of the audio-only viewer"
    );
    let mut watcher = t.media.viewer(session, &token).connect().await?;
    watcher.wait_connected().await?;
    let from = warm_up(&publisher, &mut [&mut watcher], marker).await?;
    send_batch(&publisher, from, from + 20).await?;
    let got = collect_until(&mut watcher, from + 19).await;
    ensure!(
        video_markers(&got, from) == (from..from + 20).collect::<Vec<_>>(),
        "the viewer that switched back to video: {got:?}"
    );
    Ok(())
}
