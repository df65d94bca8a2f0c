//! The popular-science library over real HTTP: tus uploads (in chunks, cut off and resumed),
//! the container checks with their reasons and nothing left behind, the video list and its
//! changes, and the Range responder byte for byte.
//!
//! On a local directory store by default; `ONCOLIVE_TEST_STORE=s3` runs the same tests on a
//! private S3-compatible server (moto, see testkit/src/s3.rs). Test files come from ffmpeg;
//! without it the tests say so and pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use oncolive_media::MediaStore;
use oncolive_server::Config;
use oncolive_server::error::ErrorBody;
use oncolive_server::library::{VideoList, VideoView, tus};
use oncolive_server::protocol::ErrorCode;
use oncolive_testkit::s3::{TestS3, suite_uses_s3};
use oncolive_testkit::{TestApp, spawn_app};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server on its own store (a directory, or a bucket of a private moto), and the store.
struct Library {
    app: TestApp,
    store: MediaStore,
    dir: tempfile::TempDir,
    _s3: Option<TestS3>,
}

async fn library() -> anyhow::Result<Library> {
    let dir = tempfile::tempdir()?;
    let (url, s3) = if suite_uses_s3() {
        let s3 = TestS3::start()?;
        s3.create_bucket("library").await?;
        (s3.url("library", "oncolive"), Some(s3))
    } else {
        (
            format!("file://{}", dir.path().join("media").display()),
            None,
        )
    };
    let mut config = Config::for_tests();
    config.media.object_store = Some(url);
    config.data_dir = dir.path().join("data");
    let app = spawn_app(config).await?;
    let store = app.state().media.clone();
    Ok(Library {
        app,
        store,
        dir,
        _s3: s3,
    })
}

impl Library {
    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.app
            .http
            .request(method, format!("{}{path}", self.app.url))
            .bearer_auth(&self.app.admin)
            .header("Tus-Resumable", "1.0.0")
    }

    /// `POST /api/uploads` of a `length`-byte file; the upload's path.
    async fn create(&self, length: u64, title: &str) -> anyhow::Result<String> {
        let res = self
            .req(Method::POST, "/api/uploads")
            .header("Upload-Length", length)
            .header("Upload-Metadata", metadata(title, "en"))
            .send()
            .await?;
        anyhow::ensure!(res.status() == StatusCode::CREATED, "{}", res.status());
        Ok(res.headers()["location"].to_str()?.to_owned())
    }

    async fn patch(&self, upload: &str, offset: u64, data: &[u8]) -> anyhow::Result<Response> {
        Ok(self
            .req(Method::PATCH, upload)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset)
            .body(data.to_vec())
            .send()
            .await?)
    }

    async fn offset(&self, upload: &str) -> anyhow::Result<Option<u64>> {
        let res = self.req(Method::HEAD, upload).send().await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        anyhow::ensure!(res.status() == StatusCode::OK, "HEAD: {}", res.status());
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert_eq!(res.headers()["tus-resumable"], "1.0.0");
        Ok(Some(res.headers()["upload-offset"].to_str()?.parse()?))
    }

    /// Uploads `data` in `chunk`-byte PATCHes; the last answer.
    async fn upload(&self, title: &str, data: &[u8], chunk: usize) -> anyhow::Result<Response> {
        let upload = self.create(data.len() as u64, title).await?;
        let mut offset = 0;
        loop {
            let end = (offset + chunk).min(data.len());
            let res = self
                .patch(&upload, offset as u64, &data[offset..end])
                .await?;
            if end == data.len() || res.status() != StatusCode::NO_CONTENT {
                return Ok(res);
            }
            offset = end;
        }
    }

    /// Every object under `prefix` in the store.
    async fn objects(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<_> = self
            .store
            .list(prefix)
            .await
            .expect("test step")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        keys
    }
}

fn metadata(title: &str, language: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "title {},topic {},expert {},language {},filename {}",
        b64(title),
        b64("肺癌筛查"),
        b64("王医生"),
        b64(language),
        b64("clip.mp4")
    )
}

async fn refusal(res: Response) -> (StatusCode, ErrorBody) {
    let status = res.status();
    let text = res.text().await.expect("test step");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text:?}: {e}")),
    )
}

/// Makes `name` with ffmpeg; `None`, after saying so, without ffmpeg.
fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> Option<PathBuf> {
    let out = dir.join(name);
    match Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
    {
        Ok(status) => {
            assert!(status.success(), "ffmpeg {args:?}");
            Some(out)
        }
        Err(e) => {
            eprintln!("SKIPPED: ffmpeg is not installed ({e}); scripts/test.sh installs it");
            None
        }
    }
}

/// A 3-second 320x240 H.264 + AAC MP4 (about 100 KB).
fn clip(dir: &Path) -> Option<Vec<u8>> {
    let path = ffmpeg(
        dir,
        "clip.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-t",
            "3",
        ],
    )?;
    Some(std::fs::read(path).expect("test step"))
}

/// Sends the head of a PATCH of `declared` bytes and `data` of it on a raw socket, and keeps
/// the socket (the rest never comes).
async fn half_patch(
    lib: &Library,
    upload: &str,
    offset: u64,
    declared: usize,
    data: &[u8],
) -> tokio::net::TcpStream {
    let addr = lib.app.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .expect("test step");
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: {offset}\r\nContent-Length: {declared}\r\n\r\n",
        lib.app.admin
    );
    socket.write_all(head.as_bytes()).await.expect("test step");
    socket.write_all(data).await.expect("test step");
    socket.flush().await.expect("test step");
    socket
}

#[tokio::test]
async fn an_upload_cut_off_mid_chunk_resumes_and_becomes_the_same_video() -> anyhow::Result<()> {
    let lib = library().await?;
    let Some(data) = clip(lib.dir.path()) else {
        return Ok(());
    };
    let options = lib
        .app
        .http
        .request(Method::OPTIONS, format!("{}/api/uploads", lib.app.url))
        .send()
        .await?;
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    assert_eq!(options.headers()["tus-extension"], "creation,termination");
    assert_eq!(options.headers()["tus-max-size"], "104857600");

    let upload = lib
        .create(data.len() as u64, "Lung cancer screening")
        .await?;
    assert!(upload.starts_with("/api/uploads/"), "{upload}");
    assert_eq!(lib.offset(&upload).await?, Some(0));
    let chunk = 16 * 1024;
    let res = lib.patch(&upload, 0, &data[..chunk]).await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["upload-offset"], chunk.to_string().as_str());

    // Half of the next chunk arrives, then nothing: while the PATCH is open nothing of it is
    // acknowledged; once the connection drops, what arrived is stored.
    let half = 5000;
    let socket = half_patch(
        &lib,
        &upload,
        chunk as u64,
        chunk,
        &data[chunk..chunk + half],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lib.offset(&upload).await?, Some(chunk as u64));
    drop(socket);
    let mut offset = chunk as u64;
    for _ in 0..50 {
        offset = lib.offset(&upload).await?.expect("test step");
        if offset != chunk as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(offset, (chunk + half) as u64, "what arrived is stored");

    // A PATCH at a stale offset is refused; from the HEAD's offset it goes on.
    let (status, body) = refusal(lib.patch(&upload, chunk as u64, &data[chunk..]).await?).await;
    assert_eq!(
        (status, body.error.code),
        (StatusCode::CONFLICT, ErrorCode::Conflict)
    );
    let mut at = offset as usize;
    let mut last = None;
    while at < data.len() {
        let end = (at + 40 * 1024).min(data.len());
        let res = lib.patch(&upload, at as u64, &data[at..end]).await?;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(res.headers()["upload-offset"], end.to_string().as_str());
        at = end;
        last = Some(res);
    }
    let id = upload.trim_start_matches("/api/uploads/");
    let last = last.expect("test step");
    assert_eq!(
        last.headers()["content-location"],
        format!("/api/videos/{id}").as_str()
    );
    assert_eq!(lib.offset(&upload).await?, None, "the upload is gone");
    assert!(lib.objects("uploads").await.is_empty());

    let list: VideoList = lib.app.get("/api/videos", None).await?.json().await?;
    let [video] = list.videos.as_slice() else {
        panic!("{list:?}")
    };
    assert_eq!(video.id.to_string(), id);
    assert_eq!(video.description.title, "Lung cancer screening");
    assert_eq!(video.description.topic, "肺癌筛查");
    assert_eq!(video.description.expert, "王医生");
    assert!((2900..=3100).contains(&video.info.duration_ms), "{video:?}");
    assert_eq!((video.info.width, video.info.height), (320, 240));
    assert_eq!(video.info.bytes, data.len() as u64);
    assert!(video.codecs.starts_with("avc1.") && video.codecs.ends_with(",mp4a.40.2"));
    assert_eq!(
        video.mime,
        format!("video/mp4; codecs=\"{}\"", video.codecs)
    );
    assert_eq!(video.url, format!("/api/videos/{id}/video.mp4"));

    // The file is the upload, byte for byte, whole and in ranges.
    let file = |range: Option<&str>| {
        let mut req = lib
            .app
            .http
            .get(format!("{}{}", lib.app.url, video.url))
            .header("Accept-Encoding", "gzip, br");
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        req.send()
    };
    let whole = file(None).await?;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["cache-control"], "public, max-age=86400");
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert!(whole.headers().get("content-encoding").is_none());
    let etag = whole.headers()["etag"].clone();
    assert_eq!(whole.bytes().await?, data.as_slice());
    let len = data.len();
    for (range, want) in [
        ("bytes=0-99".to_string(), 0..100),
        (format!("bytes={}-", len - 10), len - 10..len),
        ("bytes=-1000".to_string(), len - 1000..len),
        (format!("bytes=1000-{}", len + 5000), 1000..len),
    ] {
        let res = file(Some(&range)).await?;
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes {}-{}/{len}", want.start, want.end - 1).as_str()
        );
        assert_eq!(res.bytes().await?, &data[want], "{range}");
    }
    let res = file(Some(&format!("bytes={len}-"))).await?;
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    let (_, body) = refusal(res).await;
    assert_eq!(body.error.code, ErrorCode::RangeNotSatisfiable);
    let head = lib
        .app
        .http
        .head(format!("{}{}", lib.app.url, video.url))
        .send()
        .await?;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    assert!(head.bytes().await?.is_empty());
    let cached = lib
        .app
        .http
        .get(format!("{}{}", lib.app.url, video.url))
        .header("If-None-Match", etag.clone())
        .send()
        .await?;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    // An If-Range that no longer matches gets the whole file.
    let stale = lib
        .app
        .http
        .get(format!("{}{}", lib.app.url, video.url))
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"something-else\"")
        .send()
        .await?;
    assert_eq!(stale.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn uploads_follow_the_tus_rules() -> anyhow::Result<()> {
    let lib = library().await?;
    let url = |path: &str| format!("{}{path}", lib.app.url);
    // No token, no upload; a patient cannot either.
    let res = lib
        .app
        .http
        .post(url("/api/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", 10)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = lib
        .app
        .http
        .post(url("/api/uploads"))
        .bearer_auth(&lib.app.admin)
        .header("Tus-Resumable", "0.2.2")
        .header("Upload-Length", 10)
        .header("Upload-Metadata", metadata("t", "zh"))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(res.headers()["tus-version"], "1.0.0");
    let (_, body) = refusal(res).await;
    assert_eq!(body.error.code, ErrorCode::UnsupportedVersion);

    let create = |length: u64, meta: String| {
        lib.req(Method::POST, "/api/uploads")
            .header("Upload-Length", length)
            .header("Upload-Metadata", meta)
            .send()
    };
    let (status, body) = refusal(create(100 * 1024 * 1024 + 1, metadata("t", "zh")).await?).await;
    assert_eq!(
        (status, body.error.code),
        (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge)
    );
    let (status, body) = refusal(create(10, metadata("t", "fr")).await?).await;
    assert_eq!(
        (status, body.error.code),
        (StatusCode::BAD_REQUEST, ErrorCode::Invalid)
    );
    let (status, _) = refusal(create(10, "topic dA==".into()).await?).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a title is required");
    let res = lib
        .req(Method::POST, "/api/uploads")
        .header("Upload-Metadata", metadata("t", "zh"))
        .send()
        .await?;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "Upload-Length is required"
    );

    let length = 20 * 1024 * 1024;
    let upload = lib.create(length, "big").await?;
    // The wrong type, offset or size stores nothing.
    let res = lib
        .req(Method::PATCH, &upload)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", 0)
        .body(vec![0u8; 10])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = refusal(lib.patch(&upload, 5, &[0u8; 10]).await?).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A chunk declared over the limit is refused before a byte of it is read.
    let mut socket = half_patch(&lib, &upload, 0, tus::MAX_CHUNK_BYTES as usize + 1, &[]).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
    assert_eq!(lib.offset(&upload).await?, Some(0));
    let res = lib.patch(&upload, 0, &[0u8; 1000]).await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["tus-resumable"], "1.0.0");
    assert_eq!(lib.offset(&upload).await?, Some(1000));

    // Termination removes it and its bytes.
    let res = lib.req(Method::DELETE, &upload).send().await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(lib.offset(&upload).await?, None);
    let (status, _) = refusal(lib.patch(&upload, 1000, &[0u8; 10]).await?).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(lib.objects("uploads").await.is_empty());

    // More than Upload-Length is refused.
    let small = lib.create(10, "small").await?;
    let (status, _) = refusal(lib.patch(&small, 0, &[0u8; 11]).await?).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    Ok(())
}

#[tokio::test]
async fn invalid_uploads_are_refused_with_their_reason_and_leave_nothing() -> anyhow::Result<()> {
    let lib = library().await?;
    let dir = lib.dir.path();
    let testsrc = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"];
    let Some(webm) = ffmpeg(
        dir,
        "vp9.webm",
        &[
            &testsrc[..],
            &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-t", "1"],
        ]
        .concat(),
    ) else {
        return Ok(());
    };
    let vp9_mp4 = ffmpeg(
        dir,
        "vp9.mp4",
        &[
            &testsrc[..],
            &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-t", "1"],
        ]
        .concat(),
    )
    .expect("test step");
    let long = ffmpeg(
        dir,
        "long.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:size=64x64:rate=1",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=8000:cl=mono",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-b:a",
            "8k",
            "-t",
            "660",
        ],
    )
    .expect("test step");
    let good = clip(dir).expect("test step");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not_mp4", std::fs::read(&webm)?),
        (
            "not_mp4",
            b"a text file that calls itself video.mp4".to_vec(),
        ),
        ("unsupported_video_codec", std::fs::read(&vp9_mp4)?),
        ("too_long", std::fs::read(&long)?),
        ("truncated", good[..good.len() * 2 / 3].to_vec()),
    ];
    for (reason, data) in cases {
        let res = lib.upload(reason, &data, 64 * 1024).await?;
        let (status, body) = refusal(res).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{reason}: {body:?}"
        );
        assert_eq!(body.error.code, ErrorCode::VideoRefused);
        assert_eq!(body.error.reason.as_deref(), Some(reason), "{body:?}");
        assert!(!body.error.message.is_empty());
        assert!(
            lib.objects("uploads").await.is_empty(),
            "{reason}: nothing left"
        );
        assert!(
            lib.objects("videos").await.is_empty(),
            "{reason}: nothing kept"
        );
    }
    let list: VideoList = lib.app.get("/api/videos", None).await?.json().await?;
    assert!(list.videos.is_empty());
    // The temporary files are gone too.
    let tmp = dir.join("data/tmp");
    assert_eq!(std::fs::read_dir(&tmp)?.count(), 0, "{}", tmp.display());
    Ok(())
}

#[tokio::test]
async fn videos_are_listed_newest_first_changed_and_deleted() -> anyhow::Result<()> {
    let lib = library().await?;
    let Some(data) = clip(lib.dir.path()) else {
        return Ok(());
    };
    for title in ["first", "second"] {
        let res = lib.upload(title, &data, 1 << 20).await?;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }
    let list: VideoList = lib.app.get("/api/videos", None).await?.json().await?;
    let titles: Vec<_> = list
        .videos
        .iter()
        .map(|v| v.description.title.as_str())
        .collect();
    assert_eq!(titles, ["second", "first"]);
    let first = list.videos[1].clone();
    let path = format!("/api/videos/{}", first.id);

    // Only an admin changes a video; unknown fields and bad values are refused.
    let change = |token: Option<&str>, body: serde_json::Value| {
        let mut req = lib
            .app
            .http
            .patch(format!("{}{path}", lib.app.url))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let res = change(None, serde_json::json!({"title": "x"})).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let admin = Some(lib.app.admin.as_str());
    let res = change(admin, serde_json::json!({"language": "fr"})).await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = change(admin, serde_json::json!({"size": 1})).await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = change(admin, serde_json::json!({"title": " "})).await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = change(
        admin,
        serde_json::json!({"title": "  肺癌的早期筛查 ", "language": "zh"}),
    )
    .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let changed: VideoView = res.json().await?;
    assert_eq!(changed.description.title, "肺癌的早期筛查");
    assert_eq!(changed.description.expert, first.description.expert);
    let shown: VideoView = lib.app.get(&path, None).await?.json().await?;
    assert_eq!(shown, changed);
    assert_eq!(shown.info, first.info, "the file is untouched");

    // Deleting removes the file.
    let res = lib
        .app
        .http
        .delete(format!("{}{path}", lib.app.url))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = lib
        .app
        .http
        .delete(format!("{}{path}", lib.app.url))
        .bearer_auth(&lib.app.admin)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        lib.app.get(&path, None).await?.status(),
        StatusCode::NOT_FOUND
    );
    let file = lib.app.get(&format!("{path}/video.mp4"), None).await?;
    assert_eq!(file.status(), StatusCode::NOT_FOUND);
    assert!(
        lib.objects(&format!("videos/{}", first.id))
            .await
            .is_empty()
    );
    let list: VideoList = lib.app.get("/api/videos", None).await?.json().await?;
    assert_eq!(list.videos.len(), 1);
    assert_eq!(list.videos[0].description.title, "second");
    Ok(())
}

#[tokio::test]
async fn uploads_left_alone_expire() -> anyhow::Result<()> {
    let lib = library().await?;
    let stale = lib.create(1000, "stale").await?;
    let res = lib.patch(&stale, 0, &[1u8; 100]).await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(tus::expire(&lib.store, tus::EXPIRES_AFTER).await?, 0);
    assert_eq!(lib.offset(&stale).await?, Some(100));
    assert_eq!(tus::expire(&lib.store, Duration::ZERO).await?, 1);
    assert_eq!(lib.offset(&stale).await?, None);
    assert!(lib.objects("uploads").await.is_empty());
    Ok(())
}
