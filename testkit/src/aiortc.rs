//! A WHIP publisher on an independent WebRTC stack: aiortc, run as `testkit/py/whip_publish.py`
//! in the venv of `scripts/python-env.sh` (or the interpreter `ONCOLIVE_PYTHON` names). It
//! sends synthetic 640×360 video (H.264 or VP8) and an Opus tone, so recordings made from it
//! can be checked with ffprobe.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The Python with aiortc: `ONCOLIVE_PYTHON`, else the venv that `scripts/python-env.sh` makes.
pub fn python() -> Result<String> {
    if let Ok(python) = std::env::var("ONCOLIVE_PYTHON") {
        return Ok(python);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-env.sh");
    let out = std::process::Command::new("sh").arg(&script).output()?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A running aiortc publisher.
pub struct PyPublisher {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// When it printed `LIVE` (its connection is up and media flows).
    pub live_at: Instant,
}

impl PyPublisher {
    /// Publishes `codec` (`h264` or `vp8`) to `whip_url` for `seconds` once connected; returns
    /// when the connection is up.
    pub async fn start(
        whip_url: &str,
        token: &str,
        codec: &str,
        seconds: f64,
    ) -> Result<PyPublisher> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/whip_publish.py");
        let mut child = Command::new(python()?)
            .arg(script)
            .args([whip_url, token, codec, &seconds.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("publisher did not go live")??;
        ensure!(line.as_deref() == Some("LIVE"), "publisher said {line:?}");
        Ok(PyPublisher {
            child,
            lines,
            live_at: Instant::now(),
        })
    }

    /// Waits for the end; returns the seconds it says it sent.
    pub async fn finish(mut self) -> Result<f64> {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .context("publisher did not finish")??
            .context("publisher ended without a report")?;
        let sent: f64 = line
            .strip_prefix("SENT ")
            .context("no SENT line")?
            .parse()?;
        self.child.wait().await?;
        Ok(sent)
    }

    /// SIGKILL; returns the seconds it was live.
    pub async fn kill(mut self) -> Result<f64> {
        let live = self.live_at.elapsed().as_secs_f64();
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(live)
    }
}
