//! OncoLive's load generator as a library: the `oncolive-load` binary, the smoke tests and the
//! benchmark all drive a server through its public interfaces only (HTTP, WebSocket, WHIP/WHEP).
//!
//! - [`qa`]: patients join one session, ask and vote; moderator and expert bots; latency and
//!   completeness (every public event exactly once, in order).
//! - [`video`]: one synthetic WHIP publisher, N WHEP viewers; loss, jitter, time to first frame.
//! - [`report`]: Markdown tables and SVG plots from result files.

pub mod common;
pub mod qa;
pub mod report;
pub mod video;
