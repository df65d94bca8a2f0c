//! HLS media playlists (RFC 8216, version 7: fragmented MP4 segments) from a
//! recording's manifest.
//!
//! Three views of one manifest, at stable URLs next to the segments:
//! - [`Window::Live`]: while the session may go on, the last few segments
//!   (a sliding playlist: the live edge, for the HLS fallback);
//! - [`Window::All`]: every segment; `EVENT` while live (a late patient
//!   "watches from the start"), `VOD` once ended;
//! - once ended, `Live` is the full `VOD` playlist too.
//!
//! Segment URIs are relative: a playlist at `/api/sessions/ID/hls/index.m3u8`
//! names `p0-000001.m4s`, fetched from `/api/sessions/ID/hls/p0-000001.m4s`.

use std::fmt::Write;

use crate::manifest::{Container, Manifest};

/// Which segments a playlist lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` segments while live; everything once ended.
    Live(usize),
    /// Every segment.
    All,
}

/// Renders the playlist of the MP4 parts, or `None` while no such segment
/// is stored yet (WebM parts cannot be carried by HLS and are skipped).
pub fn playlist(manifest: &Manifest, window: Window) -> Option<String> {
    let all: Vec<_> = manifest
        .parts
        .iter()
        .enumerate()
        .filter(|(_, part)| part.container == Container::Mp4)
        .flat_map(|(index, part)| part.segments.iter().map(move |s| (index, part, s)))
        .collect();
    if all.is_empty() {
        return None;
    }
    let ended = manifest.ended();
    let skip = match window {
        Window::Live(n) if !ended => all.len().saturating_sub(n.max(1)),
        _ => 0,
    };
    let listed = &all[skip..];
    let target = listed
        .iter()
        .map(|(_, _, s)| s.duration_ms.div_ceil(1000))
        .max()
        .unwrap_or(1)
        .max(1);
    // Each part boundary before the first listed segment is a discontinuity
    // that has slid out of the window; players count them to stay in step.
    let discontinuities_before = all[..=skip]
        .windows(2)
        .filter(|pair| pair[0].0 != pair[1].0)
        .count();

    let mut out = String::with_capacity(64 + listed.len() * 40);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", listed[0].2.seq);
    if discontinuities_before > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuities_before}"
        );
    }
    match (window, ended) {
        (_, true) => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        (Window::All, false) => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
        (Window::Live(_), false) => {}
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut current = None;
    for &(index, part, segment) in listed {
        if current != Some(index) {
            if current.is_some() {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", part.init);
            current = Some(index);
        }
        let _ = writeln!(
            out,
            "#EXTINF:{:.3},",
            f64::from(segment.duration_ms) / 1000.0
        );
        out.push_str(&segment.name);
        out.push('\n');
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    Some(out)
}

/// `Cache-Control` for a playlist: a live one changes with every segment, so
/// caches may keep it about a second; an ended one no longer changes.
pub fn playlist_cache_control(manifest: &Manifest) -> &'static str {
    if manifest.ended() {
        "public, max-age=3600"
    } else {
        "public, max-age=1"
    }
}

/// `Cache-Control` for init and media segments: written once, never changed
/// (a new segment gets a new name), removed only with the whole recording.
pub const SEGMENT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Part, Segment};

    fn part(p: u32, seqs: std::ops::Range<u64>) -> Part {
        Part {
            container: Container::Mp4,
            init: format!("p{p}-init.mp4"),
            init_bytes: 1,
            codecs: "avc1.42e01f,opus".into(),
            video: None,
            audio: None,
            segments: seqs
                .map(|i| Segment {
                    seq: i,
                    name: format!("p{p}-{i:06}.m4s"),
                    start_ms: i * 4000,
                    duration_ms: 4000 + (i as u32 % 2) * 500,
                    bytes: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn live_window_slides_and_ended_lists_all() {
        let mut m = Manifest::new("s", 0, 4000);
        assert_eq!(playlist(&m, Window::Live(3)), None);
        m.parts = vec![part(0, 0..4), part(1, 4..6)];
        let live = playlist(&m, Window::Live(3)).unwrap();
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{live}");
        assert!(live.contains("#EXT-X-TARGETDURATION:5\n"));
        assert!(!live.contains("PLAYLIST-TYPE"));
        assert!(!live.contains("ENDLIST"));
        assert_eq!(live.matches("#EXTINF").count(), 3);
        assert_eq!(live.matches("#EXT-X-MAP").count(), 2);
        assert_eq!(live.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        // Slide past the part boundary: the discontinuity is counted.
        let live = playlist(&m, Window::Live(1)).unwrap();
        assert!(live.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{live}");
        assert!(live.contains("#EXT-X-MAP:URI=\"p1-init.mp4\"\n"));

        let event = playlist(&m, Window::All).unwrap();
        assert!(event.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert_eq!(event.matches("#EXTINF").count(), 6);

        m.ended_at_ms = Some(1);
        for window in [Window::Live(3), Window::All] {
            let vod = playlist(&m, window).unwrap();
            assert!(
                vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && vod.ends_with("#EXT-X-ENDLIST\n")
            );
            assert_eq!(vod.matches("#EXTINF").count(), 6);
        }
        assert_eq!(playlist_cache_control(&m), "public, max-age=3600");
    }
}
