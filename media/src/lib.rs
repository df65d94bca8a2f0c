//! Lasting media: where recordings and library videos are kept ([`store`]),
//! what a recording is made of ([`manifest`]) and how it is offered to
//! players ([`hls`], [`download`]); the recording muxers ([`fmp4`], [`webm`]) and the
//! [`segmenter`] that cuts a broadcast into their segments; and whether an upload may
//! enter the library ([`validate`]).
//!
//! Nothing here speaks WebRTC or HTTP: the relay writes recordings through
//! [`store::MediaStore`], the server reads them back and serves them.

pub mod download;
pub mod fmp4;
pub mod h264;
pub mod hls;
pub mod manifest;
pub mod segmenter;
pub mod store;
pub mod validate;
pub mod webm;

pub use manifest::{Container, Manifest, Part, Segment, Span, TrackInfo};
pub use segmenter::{Frame, Output, Resume, Segmenter, Track, VideoCodec};
pub use store::{MediaStore, StoreError};
