//! Test harness: the relay's router served on 127.0.0.1:0 with a test
//! authorizer. The publisher and viewers are the workspace's one WHIP/WHEP
//! peer, `oncolive_testkit::media`.
//!
//! Run inside a loopback-only network namespace:
//! `unshare -n sh -c 'ip link set lo up; cargo test -p oncolive-signaling'`.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use async_trait::async_trait;
use oncolive_signaling::{Access, AuthError, Authorizer, Relay, RelayConfig};
pub use oncolive_testkit::media::*;

/// Tokens are `expert:SESSION`, `viewer:SESSION` (or `viewer:SESSION:NAME`, so
/// one session can have many viewer tokens); anything else is unknown.
/// Sessions named `missing` do not exist; ended sessions answer 410.
#[derive(Default)]
pub struct TestAuth {
    pub ended: Mutex<HashSet<String>>,
    /// Sessions whose host turned recording off.
    pub not_recorded: Mutex<HashSet<String>>,
}

#[async_trait]
impl Authorizer for TestAuth {
    async fn authorize(&self, session: &str, token: &str) -> Result<Access, AuthError> {
        if session == "missing" {
            return Err(AuthError::NotFound(format!("no session {session}")));
        }
        let (role, token_session) = token
            .split_once(':')
            .ok_or_else(|| AuthError::Unauthorized("unknown token".into()))?;
        let access = match role {
            "expert" => Access::Publish,
            "viewer" => Access::View,
            _ => return Err(AuthError::Unauthorized("unknown token".into())),
        };
        let token_session = token_session.split(':').next().unwrap_or_default();
        if token_session != session {
            return Err(AuthError::Forbidden("token of another session".into()));
        }
        if self.ended.lock().expect("lock").contains(session) {
            return Err(AuthError::Gone("session ended".into()));
        }
        Ok(access)
    }

    async fn records(&self, session: &str) -> bool {
        !self.not_recorded.lock().expect("lock").contains(session)
    }
}

/// A syntactically valid offer (it never needs to connect).
pub const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n";

pub struct TestRelay {
    pub relay: Relay,
    pub auth: Arc<TestAuth>,
    pub base: String,
    pub http: reqwest::Client,
    pub media: MediaClient,
}

pub async fn spawn_relay(config: RelayConfig) -> Result<TestRelay> {
    spawn_relay_at(config, [127, 0, 0, 1].into()).await
}

/// The relay's HTTP edge on `ip`, a free port (an address of a test's own namespace).
pub async fn spawn_relay_at(config: RelayConfig, ip: std::net::IpAddr) -> Result<TestRelay> {
    init_logs();
    let auth = Arc::new(TestAuth::default());
    let relay = Relay::new(config, auth.clone())?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = relay.router();
    // With connect info, as the server serves it: viewer budgets count client addresses.
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let http = reqwest::Client::new();
    let media = MediaClient::new(&base, http.clone(), IceTimeouts::Short)?;
    Ok(TestRelay {
        relay,
        auth,
        base,
        http,
        media,
    })
}

impl TestRelay {
    /// The session's expert publishing `codec` and Opus.
    pub async fn publish(&self, session: &str, codec: VideoCodec) -> Result<Publisher> {
        self.media
            .publisher(session, &expert(session))
            .video(codec)
            .connect()
            .await
    }

    /// A viewer that decodes every codec the crate knows.
    pub async fn view(&self, session: &str) -> Result<Viewer> {
        self.media
            .viewer(session, &fresh_viewer_token(session))
            .connect()
            .await
    }

    /// A viewer whose browser knows only Opus and VP8.
    pub async fn view_vp8_only(&self, session: &str) -> Result<Viewer> {
        self.media
            .viewer(session, &fresh_viewer_token(session))
            .only(VideoCodec::Vp8)
            .connect()
            .await
    }

    /// A viewer whose media passes through `proxy`, which drops some of what the relay sends.
    pub async fn view_through(&self, session: &str, proxy: &LossyProxy) -> Result<Viewer> {
        self.media
            .viewer(session, &fresh_viewer_token(session))
            .through(proxy)
            .connect()
            .await
    }
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn expert(session: &str) -> String {
    format!("expert:{session}")
}

pub fn viewer_token(session: &str) -> String {
    format!("viewer:{session}")
}

/// A viewer token no other viewer holds, as each patient has their own
/// (viewer budgets count per token).
pub fn fresh_viewer_token(session: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("viewer:{session}:{n}")
}
