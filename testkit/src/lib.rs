//! The one test kit of the workspace. Every suite, the load generator and the criterion bench
//! start servers and talk to them through these helpers, so a protocol change is made once.
//!
//! - [`app`]: the real server on `127.0.0.1:0` from a [`Config`](oncolive_server::config::Config)
//!   (zero-to-production's `spawn_app`), with typed HTTP helpers;
//! - [`hub`]: a WebSocket client that speaks `ClientMsg`/`ServerMsg`;
//! - [`media`]: a WHIP publisher and a WHEP viewer on the `webrtc` crate;
//! - [`redis`]: private `redis-server` processes that tests may kill and restart.

pub mod media;
