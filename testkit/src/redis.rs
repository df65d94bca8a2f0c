//! Redis for the tests: a private `redis-server` per test on a free port of 127.0.0.1 with its own
//! directory, so a test may kill it and start it again on the same data; and real `oncolive`
//! processes on it, for the multi-node tests ([`crate::node`]).
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
            server.port = free_port();
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
