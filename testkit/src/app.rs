//! The real server in this process on `127.0.0.1:0`, started from a [`Config`] the way `main`
//! starts it (zero-to-production's `spawn_app`). `TEST_LOG=1` prints its logs.

use std::ops::Deref;
use std::sync::Once;
use std::time::Duration;

use anyhow::Context;
use oncolive_server::config::{BrokerConfig, Config};
use oncolive_server::{Running, api, start};
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::redis::{TestRedis, suite_uses_cluster, unique_prefix};

pub struct TestApp {
    pub api: ApiClient,
    /// `None` once [`TestApp::shutdown`] has run.
    pub running: Option<Running>,
    pub cancel: CancellationToken,
    _redis: Option<TestRedis>,
}

impl Deref for TestApp {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// Prints the server's logs when `TEST_LOG` is set; once per process.
pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("debug,hyper=info"))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Starts the server with exactly `config`.
pub async fn spawn_app(config: Config) -> anyhow::Result<TestApp> {
    spawn(config, None).await
}

/// Whether the suite was asked to run on Redis (`ONCOLIVE_TEST_BROKER=redis`, or `REDIS_URL`),
/// or on a Redis Cluster (`ONCOLIVE_TEST_BROKER=redis-cluster`).
pub fn suite_uses_redis() -> bool {
    std::env::var("ONCOLIVE_TEST_BROKER").is_ok_and(|b| b == "redis")
        || std::env::var_os("REDIS_URL").is_some()
        || suite_uses_cluster()
}

/// Starts the server with `config` on the broker the suite runs on: as given, or, when
/// [`suite_uses_redis`], on a private `redis-server` (or three-master cluster) with a fresh key
/// prefix.
pub async fn spawn_suite_app(mut config: Config) -> anyhow::Result<TestApp> {
    let redis = suite_uses_redis().then(TestRedis::start);
    if let Some(r) = &redis {
        config.broker = BrokerConfig::Redis {
            url: r.url().to_owned(),
            prefix: unique_prefix(),
            command_timeout: Duration::from_secs(2),
        };
    }
    spawn(config, redis).await
}

async fn spawn(config: Config, redis: Option<TestRedis>) -> anyhow::Result<TestApp> {
    init_logs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind 127.0.0.1:0")?;
    let cancel = CancellationToken::new();
    let running = start(config, listener, cancel.clone())
        .await
        .context("server starts")?;
    let (_, admin) = api::admin_link(&running.app);
    Ok(TestApp {
        api: ApiClient::new(format!("http://{}", running.addr), admin),
        running: Some(running),
        cancel,
        _redis: redis,
    })
}

impl TestApp {
    /// The running server's shared state (its broker, keys, relay, …).
    pub fn state(&self) -> &oncolive_server::AppState {
        &self
            .running
            .as_ref()
            .expect("the server has not been shut down")
            .app
    }

    /// Graceful shutdown, waiting at most 15 s until the server has stopped.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(15), running.stopped())
                .await
                .context("the server did not stop in time")??;
        }
        Ok(())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
