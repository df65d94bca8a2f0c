//! Who a client is on the network, as the limits count it: its address, taken from the TCP peer
//! or (behind a trusted proxy) from `X-Forwarded-For`, and keyed so that one host counts once.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;

/// A client address as every per-address limit keys it: an IPv4 address as it is, an IPv6
/// address by its /64. One IPv6 host (or one home) gets a whole /64 and may use any address in
/// it, so keying single IPv6 addresses would give it 2^64 budgets. An IPv4-mapped IPv6 address
/// is the IPv4 address it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressKey(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The client's address: the TCP peer, or, when `trust_forwarded_for`, the address our proxy
/// appended last to `X-Forwarded-For` (earlier entries are whatever the client claimed).
pub fn client_ip(trust_forwarded_for: bool, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if trust_forwarded_for && let Some(ip) = oncolive_signaling::last_forwarded_for(headers) {
        return ip;
    }
    peer.ip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::of(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_key() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_addresses_are_their_own_key_mapped_or_not() {
        assert_ne!(key("198.51.100.1"), key("198.51.100.2"));
        assert_eq!(key("::ffff:198.51.100.1"), key("198.51.100.1"));
        assert_eq!(key("198.51.100.1").to_string(), "198.51.100.1");
    }

    #[test]
    fn forwarded_for_is_read_only_when_trusted_and_only_its_last_entry() {
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(client_ip(false, peer, &headers), peer.ip());
        assert_eq!(client_ip(true, peer, &headers).to_string(), "198.51.100.7");
    }
}
