//! Clients that misbehave on purpose, on real sockets: a WebSocket upgrade that is refused (and
//! why), and raw TCP connections that send half a request or nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite;

use crate::api::WsTarget;
use crate::hub::{Socket, SocketOptions, connect_socket};

/// Opens a hub socket from `source` (any 127.x.y.z on loopback), or returns the HTTP status and
/// body of the refused upgrade.
pub async fn try_upgrade(
    target: &WsTarget,
    source: IpAddr,
) -> anyhow::Result<Result<Socket, (u16, String)>> {
    let options = SocketOptions {
        source: Some(source),
        ..SocketOptions::default()
    };
    match connect_socket(target, options).await {
        Ok(ws) => Ok(Ok(ws)),
        Err(e) => match e.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Http(res)) => {
                let body = res
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Ok(Err((res.status().as_u16(), body)))
            }
            _ => Err(e),
        },
    }
}

/// A plain TCP connection to `addr` from `source`.
pub async fn tcp_from(addr: SocketAddr, source: IpAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    Ok(socket.connect(addr).await?)
}

/// Waits (at most `within`) for the server to close `stream`, reading and dropping whatever it
/// sends first. Returns everything read; fails if the connection is still open after `within`.
pub async fn server_closes(stream: &mut TcpStream, within: Duration) -> anyhow::Result<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                // A reset is a close too (the server may drop a socket with unread bytes).
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(within, read_all).await {
        Ok(result) => result.context("reading until the close")?,
        Err(_) => bail!("the server kept the connection open"),
    }
    Ok(seen)
}

/// Sends one `GET path` on a kept-alive connection and reads its response head and body
/// (`Content-Length` bodies only). Returns the status line.
pub async fn get_keep_alive(stream: &mut TcpStream, path: &str) -> anyhow::Result<String> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: oncolive\r\nConnection: keep-alive\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "closed before a full response: {}",
                String::from_utf8_lossy(&got)
            );
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .context("no content-length")?;
            if got.len() >= end + 4 + length {
                return Ok(text.lines().next().unwrap_or_default().to_owned());
            }
        }
    }
}
