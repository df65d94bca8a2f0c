//! A session's recording as patients and archivists get it: what there is
//! (`GET …/recording`, with the answered questions as chapters), HLS playlists
//! and segments for players and HTTP caches (`GET …/hls/{file}`), and its
//! removal by the host. The relay writes recordings (see docs/video.md,
//! "Recording"); this module only reads the store, so every node serves every
//! recording.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use oncolive_media::download;
use oncolive_media::hls::{self, Window};
use oncolive_media::manifest::{manifest_key, object_key, recording_prefix};
use oncolive_media::{Container, Manifest, MediaStore, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Admin;
use crate::model::{Question, QuestionId, QuestionStatus, Role, SessionId, SessionState};
use crate::ranged::Ranged;

/// Segments in the sliding live playlist: about 24 s at the default segment length.
pub const LIVE_WINDOW: usize = 6;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/sessions/{id}/recording",
            routing::get(info).delete(remove),
        )
        .route("/api/sessions/{id}/hls/{file}", routing::get(hls_file))
        .route(
            "/api/sessions/{id}/recording.mp4",
            routing::get(|app, id, query, method, headers| {
                download(app, id, query, method, headers, Container::Mp4)
            }),
        )
        .route(
            "/api/sessions/{id}/recording.webm",
            routing::get(|app, id, query, method, headers| {
                download(app, id, query, method, headers, Container::Webm)
            }),
        )
}

/// `?part=N` of a download: which part (its `index` in `GET …/recording`); `None`: the first.
/// Parsed here so a bad one gets the API's JSON error.
fn part_query(query: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(query) = query else {
        return Ok(None);
    };
    // An index is digits: nothing to percent-decode.
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == "part")
        .map(|(_, value)| value)
        .next_back();
    value
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("part must be a part's index, not {v:?}"))
            })
        })
        .transpose()
}

/// `GET|HEAD …/recording.mp4` (or `.webm`): one part of the recording as one file
/// ([`oncolive_media::download`]), with Range.
async fn download(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    container: Container,
) -> Result<Response, ApiError> {
    let manifest = manifest(&app.media, id).await?.ok_or_else(no_recording)?;
    let index = match part_query(query.as_deref())? {
        Some(index) => index,
        None => manifest
            .parts
            .iter()
            .position(|p| !p.segments.is_empty())
            .ok_or_else(no_recording)?,
    };
    let part = manifest
        .parts
        .get(index)
        .filter(|p| !p.segments.is_empty())
        .ok_or_else(|| ApiError::NotFound(format!("this recording has no part {index}")))?;
    if part.container != container {
        return Err(ApiError::NotFound(format!(
            "part {index} of this recording is {}: ask for recording.{}",
            part.container.extension(),
            part.container.extension()
        )));
    }
    let session = id.to_string();
    // Changes whenever a segment is added or the recording ends.
    let etag = format!(
        "\"{session}-p{index}-{}-{}-{}\"",
        part.segments.len(),
        manifest.bytes(),
        u8::from(manifest.ended())
    );
    // A few hundred bytes, read to fill in the part's length (see `download::pieces`); a
    // failed read serves the init as stored.
    let init = app
        .media
        .get(&object_key(&session, &part.init))
        .await
        .map_err(|e| tracing::warn!(error = %e, "cannot read a recording's init"))
        .ok();
    let ranged = Ranged {
        store: app.media.clone(),
        pieces: download::pieces(&session, part, init.as_deref()),
        content_type: HeaderValue::from_static(container.mime()),
        etag: HeaderValue::from_str(&etag).ok(),
        cache_control: HeaderValue::from_static(if manifest.ended() {
            "public, max-age=3600"
        } else {
            "no-cache"
        }),
    };
    ranged.respond(&method, &headers).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// The session may still add to it.
    Recording,
    /// Complete: the session has ended.
    Ended,
}

/// `GET /api/sessions/{id}/recording`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub session: SessionId,
    pub state: RecordingState,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub duration_ms: u64,
    pub bytes: u64,
    pub container: Container,
    /// RFC 6381, as in a MIME type's `codecs`.
    pub codecs: String,
    /// What `MediaSource.isTypeSupported` / `canPlayType` takes.
    pub mime: String,
    /// The sliding live playlist, the VOD playlist once ended; `null` for WebM (HLS carries MP4 only).
    pub hls: Option<String>,
    /// Every segment from the start (EVENT while live, VOD once ended); `null` for WebM.
    pub hls_all: Option<String>,
    /// The first part's file (`parts[0].download`), with Range support.
    pub download: String,
    /// The recording's parts in order: a new one starts when the codec or the picture size
    /// changes. Most recordings have one.
    pub parts: Vec<PartInfo>,
    /// The answered questions, in the order they were answered.
    pub chapters: Vec<Chapter>,
}

/// One part of a recording: one file, on the recording's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartInfo {
    /// What `?part=` and [`Chapter::part`] name.
    pub index: usize,
    pub container: Container,
    pub codecs: String,
    pub mime: String,
    /// Where the part starts and how long it is, in media time.
    pub start_ms: u64,
    pub duration_ms: u64,
    /// The part as one file (its times are the recording's: it starts at `start_ms`).
    pub download: String,
}

/// A question answered in the recording, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chapter {
    pub question: QuestionId,
    /// The public (redacted) text.
    pub text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub answering_at: OffsetDateTime,
    /// Position in the recording, ms ([`Manifest::media_ms_at`]).
    pub at_ms: u64,
    /// The part that holds `at_ms` ([`PartInfo::index`]).
    pub part: usize,
}

/// The manifest of a session's recording, if it has one.
pub async fn manifest(
    store: &MediaStore,
    session: SessionId,
) -> Result<Option<Manifest>, ApiError> {
    let bytes = match store.get(&manifest_key(&session.to_string())).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::Internal(format!("recording manifest of {session}: {e}")))
}

fn no_recording() -> ApiError {
    ApiError::NotFound("this session has no recording".into())
}

async fn info(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
) -> Result<Response, ApiError> {
    // A reader who is no one: the chapters are exactly what any patient may see.
    let view = app.broker.view(id, Role::Patient, Uuid::nil()).await?;
    let manifest = manifest(&app.media, id).await?.ok_or_else(no_recording)?;
    let info = RecordingInfo::of(&manifest, id, &view.questions).ok_or_else(no_recording)?;
    let cache = if info.state == RecordingState::Ended {
        "public, max-age=30"
    } else {
        "no-cache"
    };
    Ok(([(header::CACHE_CONTROL, cache)], Json(info)).into_response())
}

impl RecordingInfo {
    /// `None` while nothing playable is stored yet.
    pub fn of(manifest: &Manifest, id: SessionId, questions: &[Question]) -> Option<RecordingInfo> {
        let base = format!("/api/sessions/{id}");
        let parts: Vec<PartInfo> = manifest
            .parts
            .iter()
            .enumerate()
            .filter_map(|(index, part)| {
                let first = part.segments.first()?;
                let last = part.segments.last()?;
                let ext = part.container.extension();
                Some(PartInfo {
                    index,
                    container: part.container,
                    codecs: part.codecs.clone(),
                    mime: format!("{}; codecs=\"{}\"", part.container.mime(), part.codecs),
                    start_ms: first.start_ms,
                    duration_ms: (last.start_ms + u64::from(last.duration_ms))
                        .saturating_sub(first.start_ms),
                    download: format!("{base}/recording.{ext}?part={index}"),
                })
            })
            .collect();
        let first = parts.first()?.clone();
        let container = first.container;
        let mp4 = parts.iter().any(|p| p.container == Container::Mp4);
        // The last part started by then; a moment before the first part belongs to it.
        let part_at = |at_ms: u64| {
            parts
                .iter()
                .rev()
                .find(|p| p.start_ms <= at_ms)
                .map_or(first.index, |p| p.index)
        };
        let mut chapters: Vec<Chapter> = questions
            .iter()
            .filter(|q| {
                matches!(
                    q.status,
                    QuestionStatus::Answered | QuestionStatus::Answering
                )
            })
            .filter_map(|q| {
                let answering_at = q.answering_at?;
                let wall_ms =
                    i64::try_from(answering_at.unix_timestamp_nanos() / 1_000_000).ok()?;
                let at_ms = manifest.media_ms_at(wall_ms)?;
                Some(Chapter {
                    question: q.id,
                    text: q.text.clone(),
                    answering_at,
                    at_ms,
                    part: part_at(at_ms),
                })
            })
            .collect();
        chapters.sort_by_key(|c| (c.answering_at, c.question));
        Some(RecordingInfo {
            session: id,
            state: if manifest.ended() {
                RecordingState::Ended
            } else {
                RecordingState::Recording
            },
            started_at: unix_ms(manifest.started_at_ms),
            ended_at: manifest.ended_at_ms.map(unix_ms),
            duration_ms: manifest.duration_ms(),
            bytes: manifest.bytes(),
            container,
            codecs: first.codecs,
            mime: first.mime,
            hls: mp4.then(|| format!("{base}/hls/index.m3u8")),
            hls_all: mp4.then(|| format!("{base}/hls/all.m3u8")),
            download: format!("{base}/recording.{}", container.extension()),
            parts,
            chapters,
        })
    }
}

fn unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

async fn hls_file(
    State(app): State<AppState>,
    Path((id, file)): Path<(SessionId, String)>,
) -> Result<Response, ApiError> {
    let manifest = manifest(&app.media, id).await?.ok_or_else(no_recording)?;
    let window = match file.as_str() {
        "index.m3u8" => Some(Window::Live(LIVE_WINDOW)),
        "all.m3u8" => Some(Window::All),
        _ => None,
    };
    if let Some(window) = window {
        let playlist = hls::playlist(&manifest, window)
            .ok_or_else(|| ApiError::NotFound("no segment is stored yet".into()))?;
        return Ok((
            [
                (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                (
                    header::CACHE_CONTROL,
                    hls::playlist_cache_control(&manifest),
                ),
            ],
            playlist,
        )
            .into_response());
    }
    // Only names the manifest lists: nothing else of the store is reachable from here.
    let content_type = file_type(&manifest, &file)
        .ok_or_else(|| ApiError::NotFound(format!("no file {file:?} in this recording")))?;
    let bytes = app.media.get(&object_key(&id.to_string(), &file)).await?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(hls::SEGMENT_CACHE_CONTROL),
    );
    Ok(response)
}

/// The content type of a file the manifest names, or `None` if it names no such file.
fn file_type(manifest: &Manifest, name: &str) -> Option<&'static str> {
    manifest.parts.iter().find_map(|part| {
        let media = match part.container {
            Container::Mp4 => "video/iso.segment",
            Container::Webm => "video/webm",
        };
        if part.init == name {
            Some(part.container.mime())
        } else if part.segments.iter().any(|s| s.name == name) {
            Some(media)
        } else {
            None
        }
    })
}

async fn remove(
    State(app): State<AppState>,
    Path(id): Path<SessionId>,
    _: Admin,
) -> Result<StatusCode, ApiError> {
    let session = app
        .broker
        .session(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such session".into()))?;
    if session.state == SessionState::Live {
        return Err(ApiError::Conflict(
            "the session is live: end it (or turn recording off) before removing its recording"
                .into(),
        ));
    }
    if manifest(&app.media, id).await?.is_none() {
        return Err(no_recording());
    }
    let freed = delete(&app.media, id).await?;
    crate::metrics::recordings_removed("deleted").increment(1);
    tracing::info!(session = %id, bytes = freed, "recording removed by the host");
    Ok(StatusCode::NO_CONTENT)
}

/// Removes every file of a session's recording, the manifest last (so a reader never finds a
/// manifest naming files that are gone, except while this runs); returns the bytes freed.
pub async fn delete(store: &MediaStore, id: SessionId) -> Result<u64, StoreError> {
    let session = id.to_string();
    let mut freed = 0;
    for (key, size) in store.list(&recording_prefix(&session)).await? {
        if key != manifest_key(&session) {
            store.delete(&key).await?;
            freed += size;
        }
    }
    store.delete(&manifest_key(&session)).await?;
    Ok(freed)
}
