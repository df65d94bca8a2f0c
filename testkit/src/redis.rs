//! Redis for the tests: a private `redis-server` per test on a free port of 127.0.0.1 with its own
//! directory, so a test may kill it and start it again on the same data; and real `oncolive`
//! processes on it, for the multi-node tests ([`crate::node`]).
//!
//! [`RedisCluster`] starts several such servers as the masters of a real Redis Cluster, and
//! [`TestRedis`] is whichever of the two a suite was asked to run on
//! (`ONCOLIVE_TEST_BROKER=redis-cluster` for the cluster).
//!
//! `REDIS_URL` points the tests at an existing server instead: then nothing is killed or
//! restarted, and the fault tests skip. Tests never flush a server: each uses its own key
//! prefix ([`unique_prefix`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting `redis-server` may take to answer PING (AOF replay included).
const START_WAIT: Duration = Duration::from_secs(15);

pub struct RedisServer {
    pub url: String,
    port: u16,
    /// `None` for a server given by `REDIS_URL`.
    own: Option<Own>,
}

struct Own {
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// `REDIS_URL` if set, else a private server with `appendfsync always`.
    pub fn start() -> RedisServer {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => RedisServer {
                url,
                port: 0,
                own: None,
            },
            _ => RedisServer::private(&["--appendfsync", "always"]),
        }
    }

    /// A private server whatever `REDIS_URL` says, with extra `redis-server` arguments (later
    /// ones win, so `["--appendfsync", "everysec"]` works).
    pub fn private(extra: &[&str]) -> RedisServer {
        RedisServer::private_on(extra, free_port)
    }

    /// A private server on a port `pick` chooses.
    fn private_on(extra: &[&str], pick: fn() -> u16) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir for redis");
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--dir".to_owned(), dir.path().display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = RedisServer {
            url: String::new(),
            port: 0,
            own: Some(Own {
                dir,
                args,
                child: None,
            }),
        };
        let mut last_error = String::new();
        // A free port can be taken by someone else before redis binds it: try a few.
        for _ in 0..5 {
            server.port = pick();
            server.url = format!("redis://127.0.0.1:{}", server.port);
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start redis-server: {last_error}");
    }

    /// Whether this test owns the server (and so may kill and restart it).
    pub fn is_private(&self) -> bool {
        self.own.is_some()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> Option<&Path> {
        self.own.as_ref().map(|o| o.dir.path())
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port;
        let Some(own) = self.own.as_mut() else {
            return Ok(());
        };
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&binary)
            .arg("--port")
            .arg(port.to_string())
            .args(&own.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{binary}: {e} (install the redis-server package)"))?;
        own.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            if let Some(child) = own.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(own.dir.path().join("redis.log")).unwrap_or_default();
                own.child = None;
                return Err(format!("redis-server exited with {status}: {log}"));
            }
            if ping(port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not answer PING in time".into())
    }

    /// How many times Redis has run `command` (lower case, e.g. `hgetall`), counting the calls
    /// made by scripts, from `INFO commandstats`. Only on a private server (`None` otherwise):
    /// the count covers every client of the server.
    pub fn command_calls(&self, command: &str) -> Option<u64> {
        self.own.as_ref()?;
        let info = inline_command(self.port, "INFO commandstats")?;
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|rest| rest.split(',').next().unwrap_or_default().parse().ok())
            .unwrap_or(Some(0))
    }

    /// Kills the server with SIGKILL: no shutdown, no final save.
    pub fn stop(&mut self) {
        if let Some(child) = self.own.as_mut().and_then(|o| o.child.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(own) = self.own.as_mut() {
            own.child = None;
        }
    }

    /// Starts the server again on the same port and directory, so it reloads its AOF.
    pub fn restart(&mut self) {
        assert!(
            self.is_private(),
            "cannot restart a server given by REDIS_URL"
        );
        self.stop();
        let mut last = String::new();
        // The port was just ours; retry briefly in case the kernel has not released it.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot restart redis-server: {last}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a new or restarted cluster may take to report `cluster_state:ok` on every node.
const CLUSTER_WAIT: Duration = Duration::from_secs(30);

/// A Redis Cluster of private masters (no replicas), each a [`RedisServer`] with
/// `--cluster-enabled yes` and its own directory (its `nodes.conf` survives a restart), put
/// together by `redis-cli --cluster create` as a new user would.
pub struct RedisCluster {
    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…`, as the server takes it.
    pub url: String,
    masters: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` servers (at least 3, as Redis requires), creates the cluster with the
    /// hash slots spread over them, and waits until every node reports it up.
    pub fn start(masters: usize) -> RedisCluster {
        let masters: Vec<RedisServer> = (0..masters.max(3))
            .map(|_| {
                RedisServer::private_on(
                    &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
                    free_cluster_port,
                )
            })
            .collect();
        let nodes: Vec<String> = masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let cli = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{cli}: {e} (install the redis-tools package)"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster {
            url: format!("redis+cluster://{}", nodes.join(",")),
            masters,
        };
        cluster.wait_until_up();
        cluster
    }

    /// How many times the masters together have run `command` (see
    /// [`RedisServer::command_calls`]).
    pub fn command_calls(&self, command: &str) -> Option<u64> {
        self.masters.iter().map(|m| m.command_calls(command)).sum()
    }

    /// Every master's port.
    pub fn ports(&self) -> Vec<u16> {
        self.masters.iter().map(RedisServer::port).collect()
    }

    /// Kills one master with SIGKILL: its slots are unserved until [`Self::restart`].
    pub fn kill_master(&mut self, index: usize) {
        self.masters[index].stop();
    }

    /// Kills every master with SIGKILL.
    pub fn stop(&mut self) {
        for master in &mut self.masters {
            master.stop();
        }
    }

    /// Starts every master again on its port and directory (AOF and `nodes.conf`), and waits
    /// until the cluster is up again.
    pub fn restart(&mut self) {
        self.stop();
        for master in &mut self.masters {
            master.restart();
        }
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + CLUSTER_WAIT;
        let up = |port| {
            inline_command(port, "CLUSTER INFO").is_some_and(|info| {
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            })
        };
        while !self.masters.iter().all(|m| up(m.port)) {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The Redis a suite runs on: one server ([`RedisServer::start`]), or a three-master
/// [`RedisCluster`] when `ONCOLIVE_TEST_BROKER=redis-cluster`.
pub enum TestRedis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl TestRedis {
    pub fn start() -> TestRedis {
        if suite_uses_cluster() {
            TestRedis::Cluster(RedisCluster::start(3))
        } else {
            TestRedis::Single(RedisServer::start())
        }
    }

    /// The URL the server takes (`redis://…` or `redis+cluster://…`).
    pub fn url(&self) -> &str {
        match self {
            TestRedis::Single(server) => &server.url,
            TestRedis::Cluster(cluster) => &cluster.url,
        }
    }

    /// Whether this test owns the servers (and so may kill and restart them).
    pub fn is_private(&self) -> bool {
        match self {
            TestRedis::Single(server) => server.is_private(),
            TestRedis::Cluster(_) => true,
        }
    }

    pub fn command_calls(&self, command: &str) -> Option<u64> {
        match self {
            TestRedis::Single(server) => server.command_calls(command),
            TestRedis::Cluster(cluster) => cluster.command_calls(command),
        }
    }

    /// Every server's `redis://` URL: one, or each master of the cluster.
    pub fn server_urls(&self) -> Vec<String> {
        match self {
            TestRedis::Single(server) => vec![server.url.clone()],
            TestRedis::Cluster(cluster) => cluster
                .ports()
                .iter()
                .map(|port| format!("redis://127.0.0.1:{port}"))
                .collect(),
        }
    }

    pub fn stop(&mut self) {
        match self {
            TestRedis::Single(server) => server.stop(),
            TestRedis::Cluster(cluster) => cluster.stop(),
        }
    }

    pub fn restart(&mut self) {
        match self {
            TestRedis::Single(server) => server.restart(),
            TestRedis::Cluster(cluster) => cluster.restart(),
        }
    }
}

/// Whether the suite was asked to run on a Redis Cluster (`ONCOLIVE_TEST_BROKER=redis-cluster`).
pub fn suite_uses_cluster() -> bool {
    std::env::var("ONCOLIVE_TEST_BROKER").is_ok_and(|b| b == "redis-cluster")
}

/// A fresh key prefix, so tests sharing a server never see each other's keys.
pub fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::now_v7().simple())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A free port whose cluster bus port (the port + 10000) is free too; from below the
/// ephemeral range, where the OS rarely hands out ports of its own.
fn free_cluster_port() -> u16 {
    loop {
        // The random low bits of a v7 uuid.
        let port = 20_000 + (uuid::Uuid::now_v7().as_u128() % 12_000) as u16;
        let free = |port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    if conn.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(conn.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// Sends one inline command and reads its bulk-string reply.
fn inline_command(port: u16, command: &str) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((header, body)) = text.split_once("\r\n") {
            let len: usize = header.strip_prefix('$')?.parse().ok()?;
            if body.len() >= len {
                return Some(body[..len].to_owned());
            }
        }
    }
}
