//! Serving a file made of one or several stored objects, with HTTP Range (RFC 9110 §14): a
//! library video is one object; a recording's MP4 is its init segment, an index and its media
//! segments, one after the other. The bytes stream from the store as the client reads them
//! (one ranged read per object touched); nothing is held in memory whole.
//!
//! What is answered:
//! - `200` with the whole file, or `206` with `Content-Range` for one `bytes=` range
//!   (`a-b`, `a-`, `-n`); both carry `Accept-Ranges: bytes`, `Content-Length`, the ETag and
//!   `Cache-Control` given;
//! - `416` (`range_not_satisfiable`, `Content-Range: bytes */LEN`) for a range starting past
//!   the end;
//! - `304` for a matching `If-None-Match`;
//! - a `Range` with several ranges, another unit, or bad syntax is ignored (the whole file, as
//!   RFC 9110 allows), and so is one with an `If-Range` that is not the current ETag;
//! - `HEAD`: the same headers, no body, nothing read from the store.

use std::ops::Range;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt};
use oncolive_media::MediaStore;

use crate::error::ApiError;

/// A piece of the file: a stored object (its key and length) or bytes made for the
/// request (a recording's segment index).
pub use oncolive_media::download::Piece;

/// A file to serve: `pieces` concatenated, in order.
#[derive(Debug, Clone)]
pub struct Ranged {
    pub store: MediaStore,
    pub pieces: Vec<Piece>,
    pub content_type: HeaderValue,
    /// A strong ETag (`"…"`, quotes included) that changes whenever the bytes do; `None`: no
    /// ETag, no `304`, and `If-Range` never matches.
    pub etag: Option<HeaderValue>,
    pub cache_control: HeaderValue,
}

/// What a `Range` header asks for, against a file of some length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// No usable `Range`: the whole file (`200`).
    Whole,
    /// One satisfiable range (`206`); the end is exclusive.
    Part(Range<u64>),
    /// A range past the end (`416`).
    Unsatisfiable,
}

/// Reads `Range: bytes=…` for a file of `len` bytes. Anything that is not exactly one byte
/// range is [`Wanted::Whole`].
pub fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part(len.saturating_sub(n)..len)
            }
        }
        (false, Some(a), end) if last.is_empty() || end.is_some() => {
            if let Some(b) = end
                && b < a
            {
                return Wanted::Whole;
            }
            if a >= len {
                return Wanted::Unsatisfiable;
            }
            let end = end.map_or(len, |b| b.saturating_add(1).min(len));
            Wanted::Part(a..end)
        }
        _ => Wanted::Whole,
    }
}

impl Ranged {
    /// The file's length: the sum of its pieces.
    pub fn len(&self) -> u64 {
        self.pieces.iter().map(Piece::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer to a `GET` or `HEAD` with these request headers.
    pub async fn respond(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Response, ApiError> {
        let len = self.len();
        let etag_matches = |value: &HeaderValue| {
            self.etag.as_ref().is_some_and(|etag| {
                value
                    .to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
            })
        };
        if headers.get(header::IF_NONE_MATCH).is_some_and(etag_matches) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            self.common_headers(response.headers_mut());
            return Ok(response);
        }
        let if_range_fails = headers
            .get(header::IF_RANGE)
            .is_some_and(|v| self.etag.as_ref().is_none_or(|etag| v != etag));
        let range = if if_range_fails {
            None
        } else {
            headers.get(header::RANGE).and_then(|v| v.to_str().ok())
        };
        let (status, bytes) = match wanted(range, len) {
            Wanted::Whole => (StatusCode::OK, 0..len),
            Wanted::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
            Wanted::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { length: len }),
        };
        let body = if method == Method::HEAD || bytes.is_empty() {
            Body::empty()
        } else {
            Body::from_stream(self.stream(bytes.clone()).await?)
        };
        let mut response = (status, body).into_response();
        let h = response.headers_mut();
        self.common_headers(h);
        h.insert(header::CONTENT_TYPE, self.content_type.clone());
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(bytes.end - bytes.start),
        );
        if status == StatusCode::PARTIAL_CONTENT
            && let Ok(v) =
                HeaderValue::from_str(&format!("bytes {}-{}/{len}", bytes.start, bytes.end - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        Ok(response)
    }

    fn common_headers(&self, h: &mut HeaderMap) {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::CACHE_CONTROL, self.cache_control.clone());
        if let Some(etag) = &self.etag {
            h.insert(header::ETAG, etag.clone());
        }
    }

    /// The pieces that `bytes` of the file covers, each with the range within it.
    pub fn spans(&self, bytes: Range<u64>) -> Vec<(Piece, Range<u64>)> {
        let mut spans = Vec::new();
        let mut start = 0;
        for piece in &self.pieces {
            let end = start + piece.len();
            let (from, to) = (bytes.start.max(start), bytes.end.min(end));
            if from < to {
                spans.push((piece.clone(), from - start..to - start));
            }
            start = end;
        }
        spans
    }

    /// `bytes` of the file as a stream. The first object is opened now, so that a missing one
    /// fails the request before its headers; the others as the client gets to them.
    async fn stream(
        &self,
        bytes: Range<u64>,
    ) -> Result<
        impl futures_util::Stream<Item = Result<bytes::Bytes, oncolive_media::StoreError>> + use<>,
        ApiError,
    > {
        let mut spans = self.spans(bytes).into_iter();
        let first = match spans.next() {
            Some(span) => read(&self.store, span).await.map_err(|e| {
                // A file the metadata names but the store lacks is a bug or a race with a
                // deletion: not found either way.
                crate::library::store_error(e)
            })?,
            None => futures_util::stream::empty().boxed(),
        };
        let store = self.store.clone();
        let rest = futures_util::stream::iter(spans)
            .then(move |span| {
                let store = store.clone();
                async move { read(&store, span).await }
            })
            .try_flatten();
        Ok(first.chain(rest))
    }
}

type ByteStream =
    futures_util::stream::BoxStream<'static, Result<bytes::Bytes, oncolive_media::StoreError>>;

/// `range` of one piece, as a stream.
async fn read(
    store: &MediaStore,
    (piece, range): (Piece, Range<u64>),
) -> Result<ByteStream, oncolive_media::StoreError> {
    match piece {
        Piece::Stored { key, .. } => store.get_range_stream(&key, range).await,
        Piece::Inline(bytes) => {
            let part = bytes.slice(range.start as usize..range.end as usize);
            Ok(futures_util::stream::once(async move { Ok(part) }).boxed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let w = |r: &str| wanted(Some(r), 100);
        assert_eq!(w("bytes=0-9"), Wanted::Part(0..10));
        assert_eq!(w("bytes=90-"), Wanted::Part(90..100));
        assert_eq!(w("bytes=90-1000"), Wanted::Part(90..100));
        assert_eq!(w("bytes=-10"), Wanted::Part(90..100));
        assert_eq!(w("bytes=-1000"), Wanted::Part(0..100));
        assert_eq!(w("bytes=99-99"), Wanted::Part(99..100));
        assert_eq!(w("bytes=100-"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0"), Wanted::Unsatisfiable);
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=x-",
            "bytes=",
            "bytes=-",
        ] {
            assert_eq!(w(ignored), Wanted::Whole, "{ignored}");
        }
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn a_range_spans_the_pieces_it_touches() {
        let ranged = Ranged {
            store: MediaStore::memory(),
            pieces: vec![
                stored("init", 10),
                Piece::Inline(bytes::Bytes::from_static(b"12345")),
                stored("b", 0),
                stored("c", 20),
            ],
            content_type: HeaderValue::from_static("video/mp4"),
            etag: None,
            cache_control: HeaderValue::from_static("no-cache"),
        };
        assert_eq!(ranged.len(), 35);
        assert_eq!(
            ranged.spans(8..17),
            vec![
                (stored("init", 10), 8..10),
                (Piece::Inline(bytes::Bytes::from_static(b"12345")), 0..5),
                (stored("c", 20), 0..2)
            ]
        );
        assert_eq!(ranged.spans(15..35), vec![(stored("c", 20), 0..20)]);
    }

    fn stored(key: &str, len: u64) -> Piece {
        Piece::Stored {
            key: key.into(),
            len,
        }
    }
}
