//! What Debian's ffmpeg says about a media file or URL: its streams and packet times
//! (`ffprobe`), and whether every frame decodes (`ffmpeg -xerror -f null`).

use std::ffi::OsStr;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;

/// What ffprobe found.
#[derive(Debug)]
pub struct Probed {
    /// Codec names in stream order (`h264`, `opus`, `vp8`, …).
    pub codecs: Vec<String>,
    /// Per stream with packets: first and last packet time, and the largest step between packets.
    pub streams: Vec<(f64, f64, f64)>,
    /// The length the container declares (what a player shows), if it declares one.
    pub declared: Option<f64>,
}

impl Probed {
    /// From the first packet of any stream to the last of any.
    pub fn duration(&self) -> f64 {
        let first = self.streams.iter().map(|s| s.0).fold(f64::MAX, f64::min);
        let last = self.streams.iter().map(|s| s.1).fold(0.0, f64::max);
        last - first
    }

    /// The largest step between two packets of one stream.
    pub fn largest_gap(&self) -> f64 {
        self.streams.iter().map(|s| s.2).fold(0.0, f64::max)
    }
}

/// Probes a file or a URL (HLS playlists included).
pub fn probe(input: impl AsRef<OsStr>) -> Result<Probed> {
    #[derive(Deserialize)]
    struct Out {
        #[serde(default)]
        streams: Vec<Stream>,
        #[serde(default)]
        packets: Vec<Packet>,
        format: Option<Format>,
    }
    #[derive(Deserialize)]
    struct Format {
        duration: Option<String>,
    }
    #[derive(Deserialize)]
    struct Stream {
        #[serde(default)]
        codec_name: String,
    }
    #[derive(Deserialize)]
    struct Packet {
        stream_index: usize,
        pts_time: Option<String>,
    }
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:packet=stream_index,pts_time:format=duration",
        ])
        .args(["-of", "json"])
        .arg(input.as_ref())
        .output()
        .context("ffprobe (Debian package ffmpeg)")?;
    ensure!(
        out.status.success(),
        "ffprobe {}: {}",
        input.as_ref().to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    // The top-level `streams` are the input's own (an HLS input lists them under `programs`
    // as well).
    let parsed: Out = serde_json::from_slice(&out.stdout).context("ffprobe's JSON")?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); parsed.streams.len()];
    for packet in parsed.packets {
        let Some(pts) = packet.pts_time.and_then(|t| t.parse::<f64>().ok()) else {
            continue;
        };
        if let Some(stream) = times.get_mut(packet.stream_index) {
            stream.push(pts);
        }
    }
    let streams = times
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            let gap = t.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
            (t[0], t[t.len() - 1], gap)
        })
        .collect();
    Ok(Probed {
        codecs: parsed.streams.into_iter().map(|s| s.codec_name).collect(),
        streams,
        declared: parsed
            .format
            .and_then(|f| f.duration)
            .and_then(|d| d.parse().ok()),
    })
}

/// Every frame of `input` decodes (ffmpeg stops at the first error).
pub fn decodes(input: impl AsRef<OsStr>) -> Result<()> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(input.as_ref())
        .args(["-f", "null", "-"])
        .output()
        .context("ffmpeg (Debian package ffmpeg)")?;
    ensure!(
        out.status.success(),
        "ffmpeg could not decode {}: {}",
        input.as_ref().to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
