//! Whole `oncolive serve` processes, as in production: for the multi-node tests (one Redis,
//! several nodes, a node killed with SIGKILL) and the broker benchmark.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::api::ApiClient;
use crate::netns::NetNamespace;
use crate::redis::{TestRedis, unique_prefix};

/// The token secret every node of a test shares, as nodes of one deployment do.
pub const SHARED_SECRET: &str = "test-secret-shared-by-all-nodes-0123456789";

/// Flags every node gets unless `extra` names them: tests and benchmarks drive many messages
/// through one socket and join many patients from one address.
const DEFAULT_FLAGS: [(&str, &str); 7] = [
    ("--asks-per-minute", "100000"),
    ("--messages-per-second", "100000"),
    ("--joins-per-second", "100000"),
    ("--asks-per-minute-per-address", "100000"),
    ("--asks-per-second-per-session", "100000"),
    ("--connections-per-address", "100000"),
    ("--tcp-per-address", "100000"),
];

/// One `oncolive serve` process; killed when dropped.
pub struct Node {
    pub api: ApiClient,
    child: Option<Child>,
    _data: tempfile::TempDir,
}

impl Node {
    /// Starts the `oncolive` binary at `bin` (in a test of the server crate,
    /// `env!("CARGO_BIN_EXE_oncolive")`) on the Redis `(url, key prefix)` if given, in memory
    /// otherwise, and waits until it is listening. `extra` are more `serve` flags.
    pub fn start(bin: &str, redis: Option<(&str, &str)>, extra: &[&str]) -> anyhow::Result<Node> {
        Node::start_in(None, "127.0.0.1:0", bin, redis, extra)
    }

    /// `n` nodes of `bin` on `redis`, under one fresh key prefix: one deployment.
    pub fn on_redis(bin: &str, redis: &TestRedis, n: usize) -> Vec<Node> {
        let prefix = unique_prefix();
        (0..n)
            .map(|_| Node::start(bin, Some((redis.url(), &prefix)), &[]).expect("node starts"))
            .collect()
    }

    /// As [`Node::start`], inside the network namespace `netns` when given (it must hold an
    /// interface with the address of `listen`), listening on `listen`.
    pub fn start_in(
        netns: Option<&NetNamespace>,
        listen: &str,
        bin: &str,
        redis: Option<(&str, &str)>,
        extra: &[&str],
    ) -> anyhow::Result<Node> {
        let data = tempfile::tempdir().context("node data dir")?;
        let ready: PathBuf = data.path().join("ready.json");
        let logs = std::env::var_os("TEST_LOG").is_some();
        let mut command = match netns {
            Some(ns) => ns.command(bin),
            None => Command::new(bin),
        };
        command
            .args(["serve", "--listen", listen])
            .arg("--data-dir")
            .arg(data.path())
            .arg("--ready-file")
            .arg(&ready);
        if let Some((url, prefix)) = redis {
            command.args(["--redis", url, "--redis-prefix", prefix]);
        }
        for (flag, value) in DEFAULT_FLAGS {
            if !extra.contains(&flag) {
                command.args([flag, value]);
            }
        }
        let output = || {
            if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let child = command
            .args(extra)
            .env("ONCOLIVE_SECRET", SHARED_SECRET)
            .env(
                "RUST_LOG",
                if logs {
                    "info,oncolive_server=debug"
                } else {
                    "warn"
                },
            )
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .spawn()
            .with_context(|| format!("cannot start {bin}"))?;
        let mut node = Node {
            api: ApiClient::new("", ""),
            child: Some(child),
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(info) = serde_json::from_str::<serde_json::Value>(&text)
            {
                node.api = ApiClient::new(
                    info["url"].as_str().context("url in the ready file")?,
                    info["admin_token"]
                        .as_str()
                        .context("admin_token in the ready file")?,
                );
                return Ok(node);
            }
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                bail!("oncolive exited early with {status}");
            }
            if Instant::now() > deadline {
                bail!("oncolive did not become ready");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process gets no chance to close anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl std::ops::Deref for Node {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
