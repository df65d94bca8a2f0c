//! Network namespaces inside one test process, so a test can give a peer an address and take it
//! away (a phone moving from Wi-Fi to mobile data) without touching the namespace it runs in.
//!
//! A [`NetNamespace`] is a thread that leaves the process's network namespace for a new one
//! (`unshare(CLONE_NEWNET)` acts on the calling thread only) and runs a current-thread tokio
//! runtime there. A socket belongs to the namespace of the thread that opens it, so everything
//! spawned with [`NetNamespace::run`] (a relay, a `webrtc` peer connection, its ICE agent's
//! sockets, a reqwest client) lives in that namespace. Never call the runtime's `spawn_blocking`
//! from outside: a blocking thread started there would sit in the caller's namespace.
//!
//! Links between namespaces are veth pairs ([`NetNamespace::veth_to`]); `ip` runs inside through
//! `nsenter`. The namespace, and the veth ends in it, vanish with the thread when the value is
//! dropped. Needs root (`CAP_SYS_ADMIN`), as the loopback-only `unshare -n` of the suites does.

use std::future::Future;
use std::process::Command;
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail, ensure};
use nix::sched::CloneFlags;
use tokio::sync::oneshot;

pub struct NetNamespace {
    name: String,
    /// `/proc/PID/task/TID/ns/net` of the namespace's thread, for `nsenter` and `ip … netns`.
    path: String,
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NetNamespace {
    /// A new, empty network namespace (only a `lo` that is down) with a runtime in it.
    pub fn new(name: &str) -> Result<NetNamespace> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                let setup = || -> Result<(tokio::runtime::Runtime, String)> {
                    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                        .context("unshare(CLONE_NEWNET) (needs root)")?;
                    let path = format!(
                        "/proc/{}/task/{}/ns/net",
                        std::process::id(),
                        nix::unistd::gettid()
                    );
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok((runtime, path))
                };
                match setup() {
                    Ok((runtime, path)) => {
                        let (stop_tx, stop_rx) = oneshot::channel::<()>();
                        let sent = ready_tx.send(Ok((runtime.handle().clone(), path, stop_tx)));
                        if sent.is_ok() {
                            // Drives every task spawned through the handle until dropped.
                            let _ = runtime.block_on(stop_rx);
                        }
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })?;
        let (handle, path, stop) = ready_rx
            .recv()
            .context("the namespace thread ended early")??;
        Ok(NetNamespace {
            name: name.to_owned(),
            path,
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/proc/PID/task/TID/ns/net`: what `ip link set … netns` and `nsenter --net=` take.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `future` on the namespace's runtime: every socket it opens is in the namespace.
    pub async fn run<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(future)
            .await
            .with_context(|| format!("a task in namespace {} panicked", self.name))
    }

    /// Runs `future` in the namespace and waits for it on this (non-async) thread: the body of
    /// a plain `#[test]`.
    pub fn block_on<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .with_context(|| format!("a task in namespace {} panicked", self.name))
    }

    /// A command that runs `program` inside the namespace (through `nsenter`, which becomes
    /// `program`: killing the child kills it), for servers and peers that are processes of
    /// their own (coturn, aiortc). `tokio::process::Command::from` makes it async.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.path)).arg(program);
        command
    }

    /// `nft -f -` with `ruleset` inside the namespace (Debian package nftables).
    pub fn nft(&self, ruleset: &str) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.path))
            .args(["nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("run nsenter (util-linux) and nft (nftables)")?;
        child
            .stdin
            .take()
            .context("nft's stdin")?
            .write_all(ruleset.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "nft in namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// `ip ARGS…` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        self.run_tool("ip", args)
    }

    /// `tc ARGS…` inside the namespace (iproute2), e.g. a `tbf` rate limit on a veth end.
    pub fn tc(&self, args: &[&str]) -> Result<()> {
        self.run_tool("tc", args)
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.path))
            .arg(tool)
            .args(args)
            .output()
            .with_context(|| format!("run nsenter (util-linux) and {tool} (iproute2)"))?;
        if !output.status.success() {
            bail!(
                "{tool} {} in namespace {}: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// A veth pair: `here` in this namespace, `there` in `other`, both up, without addresses.
    pub fn veth_to(&self, here: &str, other: &NetNamespace, there: &str) -> Result<()> {
        ensure!(
            here.len() < 16 && there.len() < 16,
            "interface names have at most 15 bytes"
        );
        self.ip(&[
            "link",
            "add",
            here,
            "type",
            "veth",
            "peer",
            "name",
            there,
            "netns",
            &other.path,
        ])?;
        self.ip(&["link", "set", here, "up"])?;
        other.ip(&["link", "set", there, "up"])
    }
}

impl Drop for NetNamespace {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
