//! Keeps the recordings within their retention and the disk bound: every minute (or every
//! `retention_check`, if shorter) each node sweeps the media store, removes ended recordings
//! past `--recording-retention-days`, then, while ended recordings together exceed
//! `--recordings-max-gb`, the oldest ended ones. A recording still being made is never removed
//! by the sweep (it counts toward the bound, so the bound can be passed while a broadcast is
//! on). Two nodes sweeping at once may both remove one recording: removing is idempotent.

use std::time::Duration;

use oncolive_media::Manifest;
use time::OffsetDateTime;

use crate::AppState;
use crate::model::SessionId;
use crate::{metrics, recording};

/// The longest time between two sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub fn spawn(app: AppState) {
    tokio::spawn(async move {
        let every = app.config.retention_check.min(SWEEP_EVERY);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = app.cancel.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = sweep(&app, OffsetDateTime::now_utc()).await {
                        tracing::warn!(error = %e, "recordings: sweep failed; trying again later");
                    }
                }
            }
        }
    });
}

/// What the sweep found: every recording's session, whether it ended (and when), its bytes.
struct Stored {
    session: SessionId,
    ended_at_ms: Option<i64>,
    bytes: u64,
}

/// One sweep; returns the sessions whose recordings it removed.
pub async fn sweep(app: &AppState, now: OffsetDateTime) -> anyhow::Result<Vec<SessionId>> {
    let mut stored = Vec::new();
    for folder in app.media.folders("recordings").await? {
        let Ok(session) = folder.parse::<SessionId>() else {
            continue;
        };
        // A recording without a manifest yet (its first segment is being written) is skipped.
        let Some(manifest) = recording::manifest(&app.media, session)
            .await
            .ok()
            .flatten()
        else {
            continue;
        };
        stored.push(Stored::of(session, &manifest));
    }
    let keep_for = app
        .config
        .media
        .recording_retention
        .unwrap_or(app.config.retention);
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let keep_ms = i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX);
    let mut removed = Vec::new();

    let (expired, mut kept): (Vec<_>, Vec<_>) = stored.into_iter().partition(|s| {
        s.ended_at_ms
            .is_some_and(|ended| now_ms.saturating_sub(ended) >= keep_ms)
    });
    for s in expired {
        remove(app, &s, "retention").await;
        removed.push(s.session);
    }

    if let Some(max) = app.config.media.recordings_max_bytes {
        // Oldest ended first; those still being made last (never removed).
        kept.sort_by_key(|s| (s.ended_at_ms.is_none(), s.ended_at_ms));
        let mut total: u64 = kept.iter().map(|s| s.bytes).sum();
        let mut i = 0;
        while total > max && i < kept.len() && kept[i].ended_at_ms.is_some() {
            remove(app, &kept[i], "space").await;
            total -= kept[i].bytes;
            removed.push(kept[i].session);
            i += 1;
        }
        kept.drain(..i);
    }
    metrics::recordings().set(kept.len() as f64);
    metrics::recordings_bytes().set(kept.iter().map(|s| s.bytes).sum::<u64>() as f64);
    Ok(removed)
}

impl Stored {
    fn of(session: SessionId, manifest: &Manifest) -> Stored {
        Stored {
            session,
            ended_at_ms: manifest.ended_at_ms,
            bytes: manifest.bytes(),
        }
    }
}

async fn remove(app: &AppState, s: &Stored, reason: &'static str) {
    match recording::delete(&app.media, s.session).await {
        Ok(freed) => {
            metrics::recordings_removed(reason).increment(1);
            tracing::info!(session = %s.session, bytes = freed, reason, "recording removed");
        }
        Err(e) => tracing::warn!(session = %s.session, error = %e, "recording not removed"),
    }
}
