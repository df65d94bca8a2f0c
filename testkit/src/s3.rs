//! A real S3-compatible server for the tests: `moto` in server mode (`moto_server`, from PyPI:
//! `pip install 'moto[server]'` into `$HOME/.cache/oncolive-venv`), one private process per
//! test on a free port of 127.0.0.1, killed when the [`TestS3`] is dropped. It speaks the S3
//! REST API (signed requests, multipart uploads, ranged GETs, listings) as AWS does.
//!
//! `moto_server` is looked for in `$ONCOLIVE_MOTO_SERVER`, then the venv, then `PATH`.
//! Suites run on it when `ONCOLIVE_TEST_STORE=s3` ([`suite_uses_s3`]).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a starting `moto_server` may take to accept connections (Python imports boto).
const START_WAIT: Duration = Duration::from_secs(60);
/// moto accepts any credentials; object_store signs with these.
const KEY_ID: &str = "oncolive-test";
const SECRET: &str = "oncolive-test-secret";
const REGION: &str = "us-east-1";

/// Whether the suite was asked to run on S3 (`ONCOLIVE_TEST_STORE=s3`).
pub fn suite_uses_s3() -> bool {
    std::env::var("ONCOLIVE_TEST_STORE").is_ok_and(|s| s == "s3")
}

pub struct TestS3 {
    port: u16,
    child: Child,
}

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("ONCOLIVE_MOTO_SERVER") {
        return path.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = PathBuf::from(home).join(".cache/oncolive-venv/bin/moto_server");
        if venv.exists() {
            return venv;
        }
    }
    PathBuf::from("moto_server")
}

impl TestS3 {
    /// Starts a private `moto_server` and waits until it accepts connections.
    pub fn start() -> anyhow::Result<TestS3> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let program = moto_server();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (pip install 'moto[server]' into $HOME/.cache/oncolive-venv)",
                    program.display()
                )
            })?;
        let mut s3 = TestS3 { port, child };
        let deadline = Instant::now() + START_WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = s3.child.try_wait()? {
                anyhow::bail!("moto_server exited at start: {status}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "moto_server did not listen in time"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(s3)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (a plain `PUT /bucket`: moto does not check its signature).
    pub async fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let res = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .context("create the bucket")?;
        anyhow::ensure!(
            res.status().is_success(),
            "creating bucket {bucket}: {}",
            res.status()
        );
        Ok(())
    }

    /// The `--object-store` URL of `bucket/prefix` on this server, with the endpoint, region and
    /// credentials as query settings (the server's environment is not touched).
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&allow_http=true&region={REGION}\
             &access_key_id={KEY_ID}&secret_access_key={SECRET}",
            self.endpoint()
        )
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
