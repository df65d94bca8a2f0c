//! Relay configuration: network settings for ICE and the limits of the HTTP edge.

use std::net::IpAddr;
use std::time::Duration;

use crate::record::RecordingConfig;
use crate::turn::TurnAuth;

/// How the relay reaches clients and how it protects the publisher.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Ephemeral UDP port range for ICE (inclusive). `None` lets the OS pick any port.
    pub udp_port_range: Option<(u16, u16)>,
    /// 1:1 NAT addresses announced instead of the local host addresses.
    pub public_ips: Vec<IpAddr>,
    /// Interfaces ICE gathers on and announces; empty means every interface
    /// but loopback (loopback only when it is the host's only interface, as
    /// in a test namespace). Naming a loopback interface here announces it
    /// and accepts clients' loopback candidates.
    pub interfaces: Vec<String>,
    /// STUN/TURN servers offered to clients in `Link` headers (RFC 9725 §4.6).
    /// The relay itself does not use them: it is expected to be reachable.
    /// `turn:`/`turns:` URLs need [`RelayConfig::turn`].
    pub ice_servers: Vec<IceServer>,
    /// Minimum time between two keyframe requests (PLI) sent to a publisher.
    pub keyframe_min_interval: Duration,
    /// Largest SDP offer accepted; larger bodies get `400`.
    pub max_sdp_bytes: usize,
    /// The shared secret and lifetime of the TURN credentials minted for each
    /// client (coturn's `use-auth-secret`). Required when a TURN URL is configured.
    pub turn: Option<TurnAuth>,
    /// Most simultaneous viewers (WHEP resources, negotiating or connected)
    /// one bearer token may hold on this node; more get `429`.
    pub max_viewers_per_token: usize,
    /// Most simultaneous viewers from one client address (IPv6 by /64) on
    /// this node; more get `429`. Generous: a hospital or a carrier-grade
    /// NAT puts many patients behind one address.
    pub max_viewers_per_address: usize,
    /// Most simultaneous viewers of one session on this node; more get `503`.
    pub max_viewers_per_session: usize,
    /// Take the client address from the last `X-Forwarded-For` entry (set
    /// only behind a proxy that appends it), for the per-address cap.
    pub trust_forwarded_for: bool,
    /// Record every broadcast into this store (see `docs/video.md`, "Recording");
    /// `None`: nothing is recorded.
    pub recording: Option<RecordingConfig>,
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
            turn: None,
            max_viewers_per_token: 4,
            max_viewers_per_address: 100,
            max_viewers_per_session: 500,
            trust_forwarded_for: false,
            recording: None,
        }
    }
}

/// A STUN or TURN server for clients. It carries no credentials: those of
/// TURN servers are minted per client from [`RelayConfig::turn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: Vec<String>,
}

/// Whether a URL names a TURN server (which needs credentials).
pub(crate) fn is_turn_url(url: &str) -> bool {
    let scheme = url.split(':').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case("turn") || scheme.eq_ignore_ascii_case("turns")
}

/// One ICE server as a browser's `RTCIceServer` takes it (what a `Link` header says, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IceServerEntry {
    pub urls: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The configured ICE servers, one entry per URL, TURN ones with `credential`.
pub(crate) fn ice_entries(
    servers: &[IceServer],
    credential: Option<&crate::turn::TurnCredential>,
) -> Vec<IceServerEntry> {
    servers
        .iter()
        .flat_map(|s| &s.urls)
        .map(|url| {
            let credential = credential.filter(|_| is_turn_url(url));
            IceServerEntry {
                urls: url.clone(),
                username: credential.map(|c| c.username.clone()),
                credential: credential.map(|c| c.credential.clone()),
            }
        })
        .collect()
}

/// One `Link` header value (RFC 9725 §4.6) for `url`, with `credential` for TURN URLs.
pub(crate) fn link_value(url: &str, credential: Option<&crate::turn::TurnCredential>) -> String {
    let mut value = format!("<{url}>; rel=\"ice-server\"");
    if let Some(credential) = credential.filter(|_| is_turn_url(url)) {
        value.push_str(&format!(
            "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
            quote_escape(&credential.username),
            quote_escape(&credential.credential)
        ));
    }
    value
}

fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::TurnCredential;

    #[test]
    fn only_turn_urls_carry_credentials() {
        let credential = TurnCredential {
            username: "1700000000:u\"1".into(),
            credential: "c".into(),
        };
        assert_eq!(
            link_value("stun:stun.example.org", Some(&credential)),
            "<stun:stun.example.org>; rel=\"ice-server\""
        );
        assert_eq!(
            link_value("turn:turn.example.org?transport=udp", Some(&credential)),
            "<turn:turn.example.org?transport=udp>; rel=\"ice-server\"; username=\"1700000000:u\\\"1\"; credential=\"c\"; credential-type=\"password\""
        );
        assert!(is_turn_url("TURNS:turn.example.org:443"));
        assert!(!is_turn_url("stun:turn.example.org"));
    }
}
