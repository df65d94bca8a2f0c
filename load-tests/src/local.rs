//! A real server started in this process on 127.0.0.1:0 (in-memory broker, its own data
//! directory), for the smoke tests and the criterion bench.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use oncolive_server::config::{Cli, Command};
use oncolive_server::{Running, api, start};
use tokio_util::sync::CancellationToken;

pub struct LocalServer {
    pub url: String,
    pub admin: String,
    running: Running,
    shutdown: CancellationToken,
    _data: tempfile::TempDir,
}

impl LocalServer {
    /// Starts with limits raised for load (`--joins-per-second`, `--messages-per-second`,
    /// `--asks-per-minute`), then `extra` flags.
    pub async fn start(extra: &[&str]) -> anyhow::Result<LocalServer> {
        let data = tempfile::tempdir()?;
        let dir = data.path().to_str().context("data dir is not UTF-8")?;
        let mut argv = vec!["oncolive", "serve", "--data-dir", dir];
        for (flag, value) in [
            ("--joins-per-second", "100000"),
            ("--messages-per-second", "100000"),
            ("--asks-per-minute", "600"),
        ] {
            if !extra.contains(&flag) {
                argv.extend([flag, value]);
            }
        }
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(argv)?.command else {
            anyhow::bail!("not a serve command");
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shutdown = CancellationToken::new();
        let running = start(&args, listener, shutdown.clone()).await?;
        let (_, admin) = api::admin_link(&running.app);
        Ok(LocalServer {
            url: format!("http://{}", running.addr),
            admin,
            running,
            shutdown,
            _data: data,
        })
    }

    /// Graceful shutdown, waiting at most 15 s.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.running.stopped())
            .await
            .context("server did not stop in time")?
    }
}
