//! Lasting media: where recordings and library videos are kept ([`store`]),
//! what a recording is made of ([`manifest`]) and how it is offered to
//! players ([`hls`]), and whether an upload may enter the library ([`validate`]).
//!
//! Nothing here speaks WebRTC or HTTP: the relay writes recordings through
//! [`store::MediaStore`], the server reads them back and serves them.

pub mod download;
pub mod hls;
pub mod manifest;
pub mod store;
pub mod validate;

pub use manifest::{Container, Manifest, Part, Segment, Span, TrackInfo};
pub use store::{MediaStore, StoreError};
