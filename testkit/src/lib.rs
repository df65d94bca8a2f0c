//! The one test kit of the workspace. Every suite, the load generator and the criterion bench
//! start servers and talk to them through these helpers, so a protocol change is made once.
//!
//! - [`aiortc`]: a WHIP publisher on aiortc (H.264 or VP8 with Opus), for recordings;
//! - [`ffprobe`]: what ffprobe and ffmpeg say about a recording or a playlist;
//! - [`app`]: the real server on `127.0.0.1:0` from a [`Config`](oncolive_server::Config)
//!   (zero-to-production's `spawn_app`);
//! - [`api`]: a typed client of the HTTP API;
//! - [`hub`]: a WebSocket client that speaks `ClientMsg`/`ServerMsg`;
//! - [`media`]: a WHIP publisher and a WHEP viewer on the `webrtc` crate;
//! - [`netns`]: network namespaces on threads of the test process, linked by veth pairs;
//! - [`redis`]: private `redis-server` processes that tests may kill and restart;
//! - [`s3`]: a private S3-compatible server (`moto_server`) for the media store;
//! - [`node`]: whole `oncolive` processes, in memory or on a Redis;
//! - [`proxy`]: a TCP proxy that can stall, in front of a real server (a slow Redis);
//! - [`raw`]: clients that misbehave on purpose (refused upgrades, half-sent requests).

pub mod aiortc;
pub mod api;
pub mod app;
pub mod ffprobe;
pub mod hub;
pub mod media;
pub mod netns;
pub mod node;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod s3;

pub use api::{ApiClient, TestSession};
pub use app::{TestApp, spawn_app, spawn_suite_app};
pub use hub::HubClient;
