//! Resumable uploads: tus 1.0.0 (<https://tus.io/protocols/resumable-upload>), core protocol
//! plus the `creation` and `termination` extensions, under `/api/uploads` (admin). The whole
//! protocol as we serve it, with every header and limit, is in docs/protocol.md.
//!
//! An upload's state is in the store, never in this process, so any node may take the next
//! chunk: `uploads/{id}/info.json` ([`UploadInfo`]) lists the chunks stored so far, each its
//! own object `uploads/{id}/chunk-{offset}-{len}`. A chunk is stored before its `PATCH` is
//! answered, and the answer's `Upload-Offset` counts only what is stored; a body cut short
//! stores what arrived. When the last byte is in, the chunks are joined into a temporary file
//! under the data directory, checked ([`oncolive_media::validate`]), and either become
//! `videos/{id}/video.mp4` + `meta.json` or are refused (`422 video_refused`); either way the
//! upload's objects are removed.
//!
//! One `PATCH` at a time per upload, as tus asks of clients. Should two race (a client
//! retrying while its first request is still being stored), each chunk has its own key, so
//! `info.json` always describes chunks that exist; the last write of it wins and `HEAD` says
//! where to go on.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Router, routing};
use base64::Engine;
use bytes::BytesMut;
use futures_util::StreamExt;
use oncolive_media::MediaStore;
use oncolive_media::validate::{self, MAX_BYTES};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tower_http::set_header::SetResponseHeaderLayer;
use uuid::Uuid;

use super::{Description, Language, Video, store_error};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Admin;

/// The only version served.
pub const VERSION: &str = "1.0.0";
pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
/// The extensions served.
pub const EXTENSIONS: &str = "creation,termination";
/// The `Content-Type` of every `PATCH`.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The largest body of one `PATCH`: each chunk is held in memory while it is stored, so this
/// bounds an upload's memory (S3 wants parts of at least 5 MiB for the final file anyway).
pub const MAX_CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// An upload that no `PATCH` touched for this long is removed.
pub const EXPIRES_AFTER: Duration = Duration::from_secs(24 * 3600);
/// A `PATCH` body that sends nothing for this long is taken as cut off: what arrived is stored.
const STALL: Duration = Duration::from_secs(30);

/// The folder of uploads in progress in the store: `uploads/{id}/…`.
pub const UPLOADS: &str = "uploads";

/// `uploads/{id}/info.json`: the [`UploadInfo`], written at creation and after every chunk.
pub fn info_key(id: Uuid) -> String {
    format!("{UPLOADS}/{id}/info.json")
}

/// `uploads/{id}/chunk-{offset:012}-{len:09}`: the upload's bytes `offset..offset+len`.
pub fn chunk_key(id: Uuid, chunk: Chunk) -> String {
    format!("{UPLOADS}/{id}/chunk-{:012}-{:09}", chunk.offset, chunk.len)
}

fn upload_prefix(id: Uuid) -> String {
    format!("{UPLOADS}/{id}")
}

/// An upload in progress, as kept in `info.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    pub id: Uuid,
    /// `Upload-Length`: the size of the whole file.
    pub length: u64,
    pub description: Description,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The last creation or `PATCH`: the upload expires [`EXPIRES_AFTER`] later.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The chunks stored, in order, each starting where the one before ends.
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub offset: u64,
    pub len: u64,
}

impl UploadInfo {
    /// `Upload-Offset`: how many bytes are stored.
    pub fn offset(&self) -> u64 {
        self.chunks.last().map_or(0, |c| c.offset + c.len)
    }

    fn expired(&self, now: OffsetDateTime, after: Duration) -> bool {
        now - self.updated_at >= after
    }
}

/// The tus routes; every answer carries `Tus-Resumable: 1.0.0`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/uploads", routing::options(options).post(create))
        .route(
            "/api/uploads/{id}",
            routing::head(head).patch(patch).delete(terminate),
        )
        .layer(SetResponseHeaderLayer::overriding(
            TUS_RESUMABLE,
            HeaderValue::from_static(VERSION),
        ))
}

fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(TUS_RESUMABLE) {
        Some(v) if v == VERSION => Ok(()),
        _ => Err(ApiError::UnsupportedVersion(format!(
            "send Tus-Resumable: {VERSION}, the only tus version served"
        ))),
    }
}

fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::BadRequest(format!("{name} must be a whole number")))
        })
        .transpose()
}

/// Discovery: what this server speaks. No token needed.
async fn options() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [
            (TUS_VERSION, HeaderValue::from_static(VERSION)),
            (TUS_EXTENSION, HeaderValue::from_static(EXTENSIONS)),
            (TUS_MAX_SIZE, HeaderValue::from(MAX_BYTES)),
        ],
    )
}

/// `Upload-Metadata`: `key base64,key base64,…`. Keys: `title` (required), `language`
/// (required, `zh` or `en`), `topic`, `expert`, `filename`; others are ignored.
fn metadata(headers: &HeaderMap) -> Result<(Description, Option<String>), ApiError> {
    let raw = headers
        .get(UPLOAD_METADATA)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Upload-Metadata must be ASCII".into()))
        })
        .transpose()?
        .unwrap_or("");
    let (mut title, mut topic, mut expert, mut language, mut filename) =
        (None, String::new(), String::new(), None, None);
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
        let value = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Upload-Metadata: the value of {key} must be UTF-8 text in base64"
                ))
            })?;
        match key {
            "title" => title = Some(value),
            "topic" => topic = value,
            "expert" => expert = value,
            "language" => language = Some(value.parse::<Language>()?),
            "filename" => filename = Some(value.chars().take(255).collect()),
            _ => {}
        }
    }
    let description = Description {
        title: title.ok_or_else(|| ApiError::Invalid("Upload-Metadata needs a title".into()))?,
        topic,
        expert,
        language: language.ok_or_else(|| {
            ApiError::Invalid("Upload-Metadata needs a language (zh or en)".into())
        })?,
    }
    .checked()?;
    Ok((description, filename))
}

async fn create(
    State(app): State<AppState>,
    _: Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    if headers.contains_key(UPLOAD_DEFER_LENGTH) {
        return Err(ApiError::BadRequest(
            "Upload-Defer-Length is not supported: send Upload-Length".into(),
        ));
    }
    if number(&headers, &header::CONTENT_LENGTH)?.unwrap_or(0) > 0 {
        return Err(ApiError::BadRequest(
            "creation-with-upload is not supported: create with an empty body, then PATCH".into(),
        ));
    }
    let length = number(&headers, &UPLOAD_LENGTH)?
        .ok_or_else(|| ApiError::BadRequest("Upload-Length is required".into()))?;
    if length > MAX_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the file is {length} bytes; at most {MAX_BYTES} (100 MB) are accepted"
        )));
    }
    let (description, filename) = metadata(&headers)?;
    if length == 0 {
        let refusal = validate::Refusal::NotMp4;
        return Err(ApiError::VideoRefused {
            reason: refusal.code(),
            message: refusal.to_string(),
        });
    }
    let now = OffsetDateTime::now_utc();
    let info = UploadInfo {
        id: Uuid::now_v7(),
        length,
        description,
        filename,
        created_at: now,
        updated_at: now,
        chunks: Vec::new(),
    };
    save_info(&app.media, &info).await?;
    tracing::info!(upload = %info.id, length, "upload created");
    let location = HeaderValue::from_str(&format!("/api/uploads/{}", info.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (UPLOAD_OFFSET, HeaderValue::from(0u64)),
        ],
    )
        .into_response())
}

async fn load_info(store: &MediaStore, id: Uuid) -> Result<Option<UploadInfo>, ApiError> {
    match store.get(&info_key(id)).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", info_key(id)))),
        Err(oncolive_media::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

/// The upload, unless there is none or it has expired (the sweeper removes it soon).
async fn find(store: &MediaStore, id: Uuid) -> Result<UploadInfo, ApiError> {
    load_info(store, id)
        .await?
        .filter(|info| !info.expired(OffsetDateTime::now_utc(), EXPIRES_AFTER))
        .ok_or_else(|| ApiError::NotFound("no such upload (finished, removed or expired)".into()))
}

async fn save_info(store: &MediaStore, info: &UploadInfo) -> Result<(), ApiError> {
    let json = serde_json::to_vec(info).map_err(|e| ApiError::Internal(e.to_string()))?;
    store
        .put(&info_key(info.id), json.into())
        .await
        .map_err(store_error)
}

fn offset_headers(info: &UploadInfo) -> [(HeaderName, HeaderValue); 3] {
    [
        (UPLOAD_OFFSET, HeaderValue::from(info.offset())),
        (UPLOAD_LENGTH, HeaderValue::from(info.length)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

async fn head(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
    _: Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    let info = find(&app.media, id).await?;
    Ok((StatusCode::OK, offset_headers(&info)).into_response())
}

async fn patch(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
    _: Admin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(OFFSET_OCTET_STREAM) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a PATCH must be Content-Type: {OFFSET_OCTET_STREAM}"
        )));
    }
    let offset = number(&headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::BadRequest("Upload-Offset is required".into()))?;
    let declared = number(&headers, &header::CONTENT_LENGTH)?;
    if declared.is_some_and(|n| n > MAX_CHUNK_BYTES) {
        return Err(too_big_chunk());
    }
    let info = find(&app.media, id).await?;
    if offset != info.offset() {
        return Err(ApiError::Conflict(format!(
            "Upload-Offset is {offset} but {} bytes are stored: HEAD, then go on from there",
            info.offset()
        )));
    }
    let room = info.length - offset;
    if declared.is_some_and(|n| n > room) {
        return Err(past_the_end(room));
    }
    let (chunk, cut_off) = read_chunk(body, room.min(MAX_CHUNK_BYTES), room).await?;
    // Stored in a task of its own: if the client goes away now, the chunk is still stored
    // whole (or not at all), never half-acknowledged.
    let task = tokio::spawn(store_chunk(app.clone(), info, chunk));
    let info = task
        .await
        .map_err(|e| ApiError::Internal(format!("storing a chunk: {e}")))??;
    if let Some(reason) = cut_off {
        return Err(ApiError::BadRequest(format!(
            "the body was cut off ({reason}); {} bytes are stored: HEAD, then go on from there",
            info.offset()
        )));
    }
    let mut response = (StatusCode::NO_CONTENT, offset_headers(&info)).into_response();
    if info.offset() == info.length {
        let video = tokio::spawn(complete(app, info))
            .await
            .map_err(|e| ApiError::Internal(format!("finishing an upload: {e}")))??;
        if let Ok(v) = HeaderValue::from_str(&format!("/api/videos/{}", video.id)) {
            response.headers_mut().insert(header::CONTENT_LOCATION, v);
        }
    }
    Ok(response)
}

fn too_big_chunk() -> ApiError {
    ApiError::TooLarge(format!(
        "a PATCH body may hold at most {MAX_CHUNK_BYTES} bytes; send the file in several"
    ))
}

fn past_the_end(room: u64) -> ApiError {
    ApiError::TooLarge(format!(
        "the body goes past Upload-Length: {room} bytes are left to send"
    ))
}

/// Reads the body, at most `max` bytes (`room` left before `Upload-Length`). A body that
/// breaks off or stalls for [`STALL`] gives what arrived and why it stopped.
async fn read_chunk(
    body: Body,
    max: u64,
    room: u64,
) -> Result<(bytes::Bytes, Option<String>), ApiError> {
    let mut stream = body.into_data_stream();
    let mut chunk = BytesMut::new();
    loop {
        match tokio::time::timeout(STALL, stream.next()).await {
            Ok(None) => return Ok((chunk.freeze(), None)),
            Ok(Some(Ok(data))) => {
                if (chunk.len() + data.len()) as u64 > max {
                    // Nothing of an oversized chunk is stored.
                    return Err(if max < MAX_CHUNK_BYTES || room <= MAX_CHUNK_BYTES {
                        past_the_end(room)
                    } else {
                        too_big_chunk()
                    });
                }
                chunk.extend_from_slice(&data);
            }
            Ok(Some(Err(e))) => return Ok((chunk.freeze(), Some(e.to_string()))),
            Err(_) => {
                return Ok((
                    chunk.freeze(),
                    Some(format!("nothing arrived for {} s", STALL.as_secs())),
                ));
            }
        }
    }
}

/// Stores `data` as the chunk at `info`'s offset, then `info.json` with it; returns the new info.
async fn store_chunk(
    app: AppState,
    mut info: UploadInfo,
    data: bytes::Bytes,
) -> Result<UploadInfo, ApiError> {
    if !data.is_empty() {
        let chunk = Chunk {
            offset: info.offset(),
            len: data.len() as u64,
        };
        app.media
            .put(&chunk_key(info.id, chunk), data)
            .await
            .map_err(store_error)?;
        info.chunks.push(chunk);
    }
    info.updated_at = OffsetDateTime::now_utc();
    save_info(&app.media, &info).await?;
    Ok(info)
}

/// Joins, checks and files a finished upload; removes the upload either way.
async fn complete(app: AppState, info: UploadInfo) -> Result<Video, ApiError> {
    let id = info.id;
    // A completion that ran before but could not remove the upload: the video is there.
    if let Some(video) = super::load(&app.media, id).await? {
        remove(&app.media, id).await?;
        return Ok(video);
    }
    let dir = app.config.data_dir.join("tmp");
    let file = assemble(&app.media, &info, &dir).await?;
    let path = file.path().to_owned();
    let checked = tokio::task::spawn_blocking(move || validate::validate_file(&path))
        .await
        .map_err(|e| ApiError::Internal(format!("checking an upload: {e}")))?
        .map_err(|e| ApiError::Internal(format!("reading an upload back: {e}")))?;
    let checked = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            remove(&app.media, id).await?;
            tracing::info!(upload = %id, reason = refusal.code(), "upload refused");
            return Err(ApiError::VideoRefused {
                reason: refusal.code(),
                message: refusal.to_string(),
            });
        }
    };
    app.media
        .put_file(&super::file_key(id), file.path())
        .await
        .map_err(store_error)?;
    drop(file);
    let video = Video {
        id,
        description: info.description,
        info: checked,
        filename: info.filename,
        created_at: OffsetDateTime::now_utc(),
    };
    // meta.json last: the video is listed only once its file is whole.
    super::save(&app.media, &video).await?;
    remove(&app.media, id).await?;
    tracing::info!(
        video = %id,
        bytes = video.info.bytes,
        duration_ms = video.info.duration_ms,
        "video added to the library"
    );
    Ok(video)
}

/// The upload's chunks, joined in a temporary file under `dir` (removed when dropped); one
/// chunk in memory at a time.
async fn assemble(
    store: &MediaStore,
    info: &UploadInfo,
    dir: &std::path::Path,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let internal = |e: std::io::Error| ApiError::Internal(format!("temporary file: {e}"));
    tokio::fs::create_dir_all(dir).await.map_err(internal)?;
    let file = tempfile::Builder::new()
        .prefix(&format!("upload-{}-", info.id))
        .tempfile_in(dir)
        .map_err(internal)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(internal)?);
    for &chunk in &info.chunks {
        let data = store
            .get(&chunk_key(info.id, chunk))
            .await
            .map_err(store_error)?;
        if data.len() as u64 != chunk.len {
            return Err(ApiError::Internal(format!(
                "chunk {chunk:?} of upload {} holds {} bytes",
                info.id,
                data.len()
            )));
        }
        out.write_all(&data).await.map_err(internal)?;
    }
    out.flush().await.map_err(internal)?;
    Ok(file)
}

async fn remove(store: &MediaStore, id: Uuid) -> Result<u64, ApiError> {
    // info.json first: a half-removed upload is not found, and the sweeper takes the rest.
    store.delete(&info_key(id)).await.map_err(store_error)?;
    store
        .delete_prefix(&upload_prefix(id))
        .await
        .map_err(store_error)
}

/// tus termination: the upload and its stored bytes are removed.
async fn terminate(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
    _: Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    find(&app.media, id).await?;
    let freed = remove(&app.media, id).await?;
    tracing::info!(upload = %id, freed, "upload terminated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes every upload not touched for `after`, and the remains of any whose `info.json` is
/// gone (a removal cut short); returns how many. Every node may run it: removing twice is
/// harmless.
pub async fn expire(store: &MediaStore, after: Duration) -> Result<usize, ApiError> {
    let now = OffsetDateTime::now_utc();
    let mut removed = 0;
    for name in store.folders(UPLOADS).await.map_err(store_error)? {
        let Ok(id) = name.parse::<Uuid>() else {
            continue;
        };
        let due = match load_info(store, id).await? {
            Some(info) => info.expired(now, after),
            None => !store
                .list(&upload_prefix(id))
                .await
                .map_err(store_error)?
                .is_empty(),
        };
        if due {
            remove(store, id).await?;
            removed += 1;
            tracing::info!(upload = %id, "expired upload removed");
        }
    }
    Ok(removed)
}

/// Every hour, [`expire`] with [`EXPIRES_AFTER`], until `app.cancel` fires.
pub fn spawn_expiry(app: AppState) {
    tokio::spawn(async move {
        let every = Duration::from_secs(3600);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = app.cancel.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = expire(&app.media, EXPIRES_AFTER).await {
                        tracing::warn!(error = %e, "upload expiry failed; trying again later");
                    }
                }
            }
        }
    });
}
