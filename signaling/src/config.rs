//! Relay configuration: network settings for ICE and the limits of the HTTP edge.

use std::net::IpAddr;
use std::time::Duration;

/// How the relay reaches clients and how it protects the publisher.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Ephemeral UDP port range for ICE (inclusive). `None` lets the OS pick any port.
    pub udp_port_range: Option<(u16, u16)>,
    /// 1:1 NAT addresses announced instead of the local host addresses.
    pub public_ips: Vec<IpAddr>,
    /// Interfaces ICE gathers on; empty means all of them.
    pub interfaces: Vec<String>,
    /// STUN/TURN servers offered to clients in `Link` headers (RFC 9725 §4.6).
    /// The relay itself does not use them: it is expected to be reachable.
    pub ice_servers: Vec<IceServer>,
    /// Minimum time between two keyframe requests (PLI) sent to a publisher.
    pub keyframe_min_interval: Duration,
    /// Largest SDP offer accepted; larger bodies get `400`.
    pub max_sdp_bytes: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            udp_port_range: None,
            public_ips: Vec::new(),
            interfaces: Vec::new(),
            ice_servers: Vec::new(),
            keyframe_min_interval: Duration::from_millis(500),
            max_sdp_bytes: 64 * 1024,
        }
    }
}

/// A STUN or TURN server for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl IceServer {
    /// One `Link` header value per URL, in the form of RFC 9725 §4.6.
    pub(crate) fn link_values(&self) -> impl Iterator<Item = String> + '_ {
        self.urls.iter().map(move |url| {
            let mut value = format!("<{url}>; rel=\"ice-server\"");
            if let Some(username) = &self.username {
                value.push_str(&format!("; username=\"{}\"", quote_escape(username)));
            }
            if let Some(credential) = &self.credential {
                value.push_str(&format!(
                    "; credential=\"{}\"; credential-type=\"password\"",
                    quote_escape(credential)
                ));
            }
            value
        })
    }
}

fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_values_carry_turn_credentials() {
        let server = IceServer {
            urls: vec![
                "stun:stun.example.org".into(),
                "turn:turn.example.org?transport=udp".into(),
            ],
            username: Some("user".into()),
            credential: Some("p\"w".into()),
        };
        let values: Vec<String> = server.link_values().collect();
        assert_eq!(
            values[0],
            "<stun:stun.example.org>; rel=\"ice-server\"; username=\"user\"; credential=\"p\\\"w\"; credential-type=\"password\""
        );
        assert_eq!(values.len(), 2);
    }
}
