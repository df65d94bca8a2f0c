//! Where recordings and videos live: a directory under the data directory by
//! default, or any S3-compatible object store (`--object-store s3://bucket/prefix`),
//! so that every node reads what any node wrote.
//!
//! Both backends come from the `object_store` crate. Every `put` replaces an
//! object whole (the local backend writes a temporary file and renames it,
//! S3 has no partial objects), which is what makes a recording survive a
//! `kill -9`: a reader sees the previous version of an object or the new
//! one, never half of it.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("object store URL {url:?} not understood: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("object store: {0}")]
    Backend(#[source] object_store::Error),
    #[error("local media directory: {0}")]
    Io(#[from] std::io::Error),
}

impl From<object_store::Error> for StoreError {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { path, .. } => StoreError::NotFound(path),
            other => StoreError::Backend(other),
        }
    }
}

/// Which backend a store uses, for `/readyz`, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
    Memory,
}

/// A handle to the media store; cheap to clone.
#[derive(Clone)]
pub struct MediaStore {
    inner: Arc<dyn ObjectStore>,
    backend: Backend,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStore")
            .field("backend", &self.backend)
            .finish()
    }
}

impl MediaStore {
    /// Opens the store named by `url`, or the directory `local_root` (created
    /// if missing) when there is none.
    ///
    /// - `s3://bucket` or `s3://bucket/prefix`: an S3-compatible store; the
    ///   endpoint, region and credentials come from the usual environment
    ///   (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    ///   `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true` for a plain-HTTP
    ///   MinIO), path-style requests unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`;
    /// - `file:///absolute/path`: that directory;
    /// - `memory://`: in this process only (tests).
    pub fn open(url: Option<&str>, local_root: &FsPath) -> Result<MediaStore, StoreError> {
        let Some(url) = url else {
            return Self::local(local_root);
        };
        let bad = |reason: &str| StoreError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(&e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(MediaStore {
                inner,
                backend: Backend::S3,
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("file:// needs an absolute path"));
            }
            return Self::local(FsPath::new(path));
        }
        if url == "memory://" {
            return Ok(Self::memory());
        }
        Err(bad("expected s3://, file:// or memory://"))
    }

    fn local(root: &FsPath) -> Result<MediaStore, StoreError> {
        std::fs::create_dir_all(root)?;
        let fs = LocalFileSystem::new_with_prefix(root)?;
        Ok(MediaStore {
            inner: Arc::new(fs),
            backend: Backend::Local,
        })
    }

    /// A store that lives in this process only.
    pub fn memory() -> MediaStore {
        MediaStore {
            inner: Arc::new(InMemory::new()),
            backend: Backend::Memory,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Writes `key` whole, replacing what was there.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&Path::from(key), PutPayload::from(data))
            .await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        Ok(self.inner.get(&Path::from(key)).await?.bytes().await?)
    }

    /// Bytes `range` of `key` (the end is exclusive and must be within the object).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        Ok(self.inner.get_range(&Path::from(key), range).await?)
    }

    /// The size of `key` in bytes.
    pub async fn size(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.inner.head(&Path::from(key)).await?.size)
    }

    /// Removes `key`; removing what is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Every object under `prefix` (a folder: `recordings/ID`), with its size.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = Path::from(prefix);
        let objects: Vec<_> = self.inner.list(Some(&prefix)).try_collect().await?;
        Ok(objects
            .into_iter()
            .map(|meta| (meta.location.to_string(), meta.size))
            .collect())
    }

    /// Removes every object under `prefix`; returns the bytes freed.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut freed = 0;
        for (key, size) in self.list(prefix).await? {
            self.delete(&key).await?;
            freed += size;
        }
        Ok(freed)
    }

    /// The names directly under `prefix` that are folders (`recordings` → session ids).
    pub async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let listed = self
            .inner
            .list_with_delimiter(Some(&Path::from(prefix)))
            .await?;
        Ok(listed
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }
}

/// Objects larger than a few MB (library videos) are written and read in pieces of this size:
/// S3's smallest multipart part is 5 MiB.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Streaming reads and writes, for objects that should not be held in memory whole.
impl MediaStore {
    /// Writes the local file `file` to `key` whole, in parts of [`PART_BYTES`] (an S3
    /// multipart upload; on a local store, a temporary file renamed at the end). Like
    /// [`MediaStore::put`], a reader never sees half of it; a failed write is aborted.
    pub async fn put_file(&self, key: &str, file: &FsPath) -> Result<u64, StoreError> {
        use tokio::io::AsyncReadExt;
        let mut src = tokio::fs::File::open(file).await?;
        let upload = self.inner.put_multipart(&Path::from(key)).await?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; 256 * 1024];
        let mut written = 0u64;
        loop {
            let n = match src.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            };
            // At most two parts in flight: memory stays at a few parts, whatever the size.
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            writer.write(&buf[..n]);
            written += n as u64;
        }
        writer.finish().await?;
        Ok(written)
    }

    /// Bytes `range` of `key` as a stream (one request to S3, read as the consumer pulls), for
    /// answering Range requests without holding the object in memory.
    pub async fn get_range_stream(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<Bytes, StoreError>>, StoreError>
    {
        use futures_util::StreamExt;
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..Default::default()
        };
        let result = self.inner.get_opts(&Path::from(key), options).await?;
        Ok(result
            .into_stream()
            .map(|r| r.map_err(StoreError::from))
            .boxed())
    }
}

impl MediaStore {
    /// [`MediaStore::open`], where an `s3://` URL may also carry the S3 settings as query
    /// parameters, over those of the environment: `s3://bucket/prefix?endpoint=http://minio:9000
    /// &region=us-east-1&allow_http=true` (the names are `object_store`'s
    /// `AmazonS3ConfigKey`s, with or without `aws_`; values percent-encoded). Credentials may
    /// be given so too (tests do), though the environment keeps them out of `ps`.
    pub fn open_with_settings(
        url: Option<&str>,
        local_root: &FsPath,
    ) -> Result<MediaStore, StoreError> {
        use object_store::aws::AmazonS3ConfigKey;
        let Some((base, query)) = url.and_then(|u| u.split_once('?')) else {
            return Self::open(url, local_root);
        };
        let bad = |reason: String| StoreError::BadUrl {
            url: base.to_string(),
            reason,
        };
        let Some(rest) = base.strip_prefix("s3://") else {
            return Err(bad("only s3:// URLs take settings".into()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".into()));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key: AmazonS3ConfigKey = key
                .parse()
                .map_err(|_| bad(format!("unknown S3 setting {key:?}")))?;
            builder = builder.with_config(key, percent_decode(value));
        }
        let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        Ok(MediaStore {
            inner,
            backend: Backend::S3,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(store: &MediaStore) {
        store
            .put("recordings/a/x.m4s", Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        store
            .put("recordings/b/y.m4s", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(
            store.get_range("recordings/a/x.m4s", 2..5).await.unwrap(),
            &b"234"[..]
        );
        assert_eq!(store.size("recordings/a/x.m4s").await.unwrap(), 10);
        let mut folders = store.folders("recordings").await.unwrap();
        folders.sort();
        assert_eq!(folders, ["a", "b"]);
        assert_eq!(store.delete_prefix("recordings/a").await.unwrap(), 10);
        assert!(matches!(
            store.get("recordings/a/x.m4s").await,
            Err(StoreError::NotFound(_))
        ));
        store.delete("recordings/a/x.m4s").await.unwrap();
        assert_eq!(store.list("recordings").await.unwrap().len(), 1);
    }

    async fn streams(store: &MediaStore, dir: &FsPath) {
        use futures_util::TryStreamExt;
        let file = dir.join("big.bin");
        let data: Vec<u8> = (0..PART_BYTES * 2 + 1234)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&file, &data).unwrap();
        assert_eq!(
            store.put_file("videos/v/video.mp4", &file).await.unwrap(),
            data.len() as u64
        );
        assert_eq!(
            store.size("videos/v/video.mp4").await.unwrap(),
            data.len() as u64
        );
        let range = PART_BYTES as u64 - 10..PART_BYTES as u64 * 2 + 7;
        let got: Vec<Bytes> = store
            .get_range_stream("videos/v/video.mp4", range.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            got.concat(),
            &data[range.start as usize..range.end as usize]
        );
    }

    #[tokio::test]
    async fn large_objects_stream_in_and_out() {
        let dir = tempfile::tempdir().unwrap();
        streams(
            &MediaStore::open(None, &dir.path().join("media")).unwrap(),
            dir.path(),
        )
        .await;
        streams(&MediaStore::memory(), dir.path()).await;
    }

    #[tokio::test]
    async fn local_and_memory_behave_alike() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(&MediaStore::open(None, &dir.path().join("media")).unwrap()).await;
        round_trip(&MediaStore::memory()).await;
    }

    #[test]
    fn urls_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            MediaStore::open_with_settings(
                Some("s3://b/p?endpoint=http%3A%2F%2Fh:1&allow_http=true"),
                dir.path()
            )
            .is_ok()
        );
        for url in [
            "s3://",
            "file://relative",
            "ftp://x",
            "s3://b?no_such_setting=1",
            "file:///x?a=b",
        ] {
            assert!(
                matches!(
                    MediaStore::open_with_settings(Some(url), dir.path()),
                    Err(StoreError::BadUrl { .. })
                ),
                "{url}"
            );
        }
    }
}
