//! The popular-science library: videos the host uploads (resumably, with tus: [`tus`]), checked
//! by their container ([`oncolive_media::validate`]), listed publicly and served with Range.
//!
//! Everything lives in the [`MediaStore`], nothing in this process, so every node sees every
//! upload and every video (the store keys are below). Videos are never rewritten: a `PATCH`
//! changes `meta.json` only, so a video's file and ETag stay as they were.

pub mod tus;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};
use oncolive_media::MediaStore;
use oncolive_media::validate::VideoInfo;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Admin, JsonBody};
use crate::model::{MAX_EXPERT_CHARS, MAX_TITLE_CHARS, checked_text};
use crate::ranged::{Piece, Ranged};

/// The folder of library videos in the store: `videos/{id}/…`.
pub const VIDEOS: &str = "videos";

/// `videos/{id}/meta.json`: the [`Video`] (JSON); written last on creation, deleted first, so a
/// listed video always has its file.
pub fn meta_key(id: Uuid) -> String {
    format!("{VIDEOS}/{id}/meta.json")
}

/// `videos/{id}/video.mp4`: the file as uploaded, byte for byte.
pub fn file_key(id: Uuid) -> String {
    format!("{VIDEOS}/{id}/video.mp4")
}

/// The longest topic of a video (one line).
pub const MAX_VIDEO_TOPIC_CHARS: usize = 200;

/// How long a player and any cache in front may keep a video's bytes: they never change.
const VIDEO_CACHE_CONTROL: &str = "public, max-age=86400";

/// The language a video speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Zh,
    En,
}

impl std::str::FromStr for Language {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Language, ApiError> {
        match s {
            "zh" => Ok(Language::Zh),
            "en" => Ok(Language::En),
            other => Err(ApiError::Invalid(format!(
                "language must be zh or en, not {other:?}"
            ))),
        }
    }
}

/// What the host says about a video (at upload, or later with `PATCH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub title: String,
    pub topic: String,
    pub expert: String,
    pub language: Language,
}

impl Description {
    /// The same with every text trimmed and checked, as session fields are.
    pub fn checked(self) -> Result<Description, ApiError> {
        let invalid = ApiError::Invalid;
        Ok(Description {
            title: checked_text("title", &self.title, 1, MAX_TITLE_CHARS).map_err(invalid)?,
            topic: checked_text("topic", &self.topic, 0, MAX_VIDEO_TOPIC_CHARS).map_err(invalid)?,
            expert: checked_text("expert", &self.expert, 0, MAX_EXPERT_CHARS).map_err(invalid)?,
            language: self.language,
        })
    }
}

/// A library video as stored in `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Video {
    /// The id of the upload it came from.
    pub id: Uuid,
    #[serde(flatten)]
    pub description: Description,
    /// What the container says (duration, size, codecs).
    #[serde(flatten)]
    pub info: VideoInfo,
    /// The uploader's file name, if it gave one; kept for the host, not shown publicly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A video as the API shows it: what is stored, less the file name, plus what follows from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoView {
    pub id: Uuid,
    #[serde(flatten)]
    pub description: Description,
    #[serde(flatten)]
    pub info: VideoInfo,
    /// `avc1.64001f,mp4a.40.2`: for `MediaSource.isTypeSupported` and `canPlayType`.
    pub codecs: String,
    /// `video/mp4; codecs="…"`.
    pub mime: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Where the file is: `/api/videos/{id}/video.mp4` (relative to the server).
    pub url: String,
}

impl Video {
    pub fn view(&self) -> VideoView {
        let codecs = self.info.codecs();
        VideoView {
            id: self.id,
            description: self.description.clone(),
            info: self.info.clone(),
            mime: format!("video/mp4; codecs=\"{codecs}\""),
            codecs,
            created_at: self.created_at,
            url: format!("/api/videos/{}/video.mp4", self.id),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VideoList {
    pub videos: Vec<VideoView>,
}

/// `PATCH /api/videos/{id}`: the fields to change.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoChanges {
    pub title: Option<String>,
    pub topic: Option<String>,
    pub expert: Option<String>,
    pub language: Option<Language>,
}

/// The library's routes: uploads (tus) and videos. Upload chunks are far larger than the API's
/// other bodies: [`routes`] is mounted outside the general body limit and bounds chunks itself.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/videos", routing::get(list))
        .route(
            "/api/videos/{id}",
            routing::get(show).patch(update).delete(delete),
        )
        // `get` answers HEAD too (axum drops the body); the responder sends no bytes for HEAD.
        .route("/api/videos/{id}/video.mp4", routing::get(file))
}

/// Reads `videos/{id}/meta.json`; `None` when there is no such video.
pub async fn load(store: &MediaStore, id: Uuid) -> Result<Option<Video>, ApiError> {
    match store.get(&meta_key(id)).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", meta_key(id)))),
        Err(oncolive_media::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

async fn find(store: &MediaStore, id: Uuid) -> Result<Video, ApiError> {
    load(store, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such video".into()))
}

pub async fn save(store: &MediaStore, video: &Video) -> Result<(), ApiError> {
    let json = serde_json::to_vec(video).map_err(|e| ApiError::Internal(e.to_string()))?;
    store
        .put(&meta_key(video.id), json.into())
        .await
        .map_err(store_error)
}

/// A store failure as the API reports it: not found, or unavailable (logged).
pub fn store_error(e: oncolive_media::StoreError) -> ApiError {
    match e {
        oncolive_media::StoreError::NotFound(_) => ApiError::NotFound("no such object".into()),
        other => {
            tracing::warn!(error = %other, "media store unavailable");
            ApiError::Unavailable("the media store is unavailable; try again".into())
        }
    }
}

/// Every video, newest first.
pub async fn videos(store: &MediaStore) -> Result<Vec<Video>, ApiError> {
    use futures_util::StreamExt;
    let ids: Vec<Uuid> = store
        .folders(VIDEOS)
        .await
        .map_err(store_error)?
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    let loaded: Vec<_> = futures_util::stream::iter(ids)
        .map(|id| load(store, id))
        .buffer_unordered(16)
        .collect()
        .await;
    let mut videos = Vec::with_capacity(loaded.len());
    for video in loaded {
        // A folder without meta.json is a video being created or deleted: not listed.
        if let Some(video) = video? {
            videos.push(video);
        }
    }
    videos.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(videos)
}

async fn list(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let videos = videos(&app.media).await?.iter().map(Video::view).collect();
    Ok(Json(VideoList { videos }))
}

async fn show(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(find(&app.media, id).await?.view()))
}

/// Changes a video's description. Two hosts editing the same video at once: the last write wins
/// (the store has no compare-and-set that every S3 implementation offers).
async fn update(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
    _: Admin,
    JsonBody(changes): JsonBody<VideoChanges>,
) -> Result<impl IntoResponse, ApiError> {
    let mut video = find(&app.media, id).await?;
    let d = video.description.clone();
    video.description = Description {
        title: changes.title.unwrap_or(d.title),
        topic: changes.topic.unwrap_or(d.topic),
        expert: changes.expert.unwrap_or(d.expert),
        language: changes.language.unwrap_or(d.language),
    }
    .checked()?;
    save(&app.media, &video).await?;
    tracing::info!(video = %id, "video changed");
    Ok(Json(video.view()))
}

/// Removes the video: `meta.json` first (so it leaves the list at once), then the file.
async fn delete(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
    _: Admin,
) -> Result<impl IntoResponse, ApiError> {
    find(&app.media, id).await?;
    app.media.delete(&meta_key(id)).await.map_err(store_error)?;
    let freed = app
        .media
        .delete_prefix(&format!("{VIDEOS}/{id}"))
        .await
        .map_err(store_error)?;
    tracing::info!(video = %id, freed, "video deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn file(
    State(app): State<AppState>,
    Path(id): Path<Uuid>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let video = find(&app.media, id).await?;
    let ranged = Ranged {
        store: app.media.clone(),
        pieces: vec![Piece::Stored {
            key: file_key(id),
            len: video.info.bytes,
        }],
        content_type: HeaderValue::from_static("video/mp4"),
        // The bytes of a video never change: its id names them.
        etag: HeaderValue::from_str(&format!("\"{id}\"")).ok(),
        cache_control: HeaderValue::from_static(VIDEO_CACHE_CONTROL),
    };
    ranged.respond(&method, &headers).await
}
