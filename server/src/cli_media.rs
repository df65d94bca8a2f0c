//! The flags of `serve` for recordings and library videos (see docs/video.md, "Recording").

use std::time::Duration;

use clap::Args;

use crate::config::MediaConfig;

#[derive(Debug, Clone, Args)]
pub struct MediaArgs {
    /// Where recordings and library videos are kept: `s3://bucket/prefix` for an
    /// S3-compatible store shared by every node (endpoint and credentials from AWS_ENDPOINT_URL,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; AWS_ALLOW_HTTP=true for plain
    /// HTTP; or object_store's S3 settings as the URL's query: `?endpoint=…&allow_http=true`),
    /// or `file:///path`. Default: the `media` folder of the data directory.
    #[arg(long, env = "ONCOLIVE_OBJECT_STORE", hide_env_values = true)]
    pub object_store: Option<String>,
    /// Ended recordings beyond this many gigabytes (10^9 bytes) in all are removed, oldest
    /// first. Default: no bound.
    #[arg(long, env = "ONCOLIVE_RECORDINGS_MAX_GB")]
    pub recordings_max_gb: Option<f64>,
    /// Days after a session ends before its recording is removed. Default: the retention of
    /// the session's private data (`--retention-days`).
    #[arg(long, env = "ONCOLIVE_RECORDING_RETENTION_DAYS")]
    pub recording_retention_days: Option<u64>,
    /// Seconds each recording segment aims at (cut at the next keyframe after it).
    #[arg(long, env = "ONCOLIVE_RECORDING_SEGMENT_SECONDS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=30))]
    pub recording_segment_seconds: u64,
}

impl MediaArgs {
    pub fn config(&self) -> MediaConfig {
        MediaConfig {
            object_store: self.object_store.clone().filter(|s| !s.trim().is_empty()),
            recordings_max_bytes: self.recordings_max_gb.map(|gb| (gb.max(0.0) * 1e9) as u64),
            recording_retention: self
                .recording_retention_days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
            target_segment: Duration::from_secs(self.recording_segment_seconds),
        }
    }
}
