//! OncoLive's server: the HTTP API, the WebSocket hub and the embedded web app.
//!
//! `main` turns the command line into a [`Config`] and calls [`start`]; the integration tests
//! and the load generator build a `Config` and call it the same way on `127.0.0.1:0`.

pub mod accept;
pub mod api;
pub mod api_types;
pub mod app;
pub mod auth;
pub mod broker;
pub mod calendar;
pub mod cli;
mod cli_media;
mod cli_privacy;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod export;
pub mod extract;
pub mod files;
pub mod hub;
pub mod library;
pub mod limits;
pub mod media_retention;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod ranged;
pub mod recording;
pub mod rotate;
pub mod routes;
pub mod screen;
pub mod server;
pub mod similar;
pub mod site;
pub mod snapshot;
pub mod sockets;
pub mod text;
pub mod video;
pub mod video_presence;
pub mod web;
pub mod ws;

pub use app::AppState;
pub use config::Config;
pub use server::{Running, start};
