//! What the relay exposes and whom it talks to: the local addresses it
//! announces and the client candidates it will send connectivity checks to.
//!
//! A candidate is an address the relay's ICE agent sends STUN packets to, so
//! accepting any address a client names would let a stranger aim the relay at
//! its own host (loopback), the link (link-local, multicast) or a cloud
//! provider's metadata service. Pure functions: no I/O except reading the
//! host's interface list once at start-up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Cloud metadata and platform services reachable from inside a VM that are
/// not covered by the link-local range: AWS's IPv6 IMDS, Alibaba's metadata
/// service, Azure's wire server.
const METADATA: [IpAddr; 3] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
];

/// Why a client candidate's address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unspecified,
    Loopback,
    LinkLocal,
    Multicast,
    Metadata,
    /// A DNS name: resolving it would let a client point the relay anywhere.
    Hostname,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unspecified => "an unspecified address",
            Refusal::Loopback => "a loopback address",
            Refusal::LinkLocal => "a link-local address",
            Refusal::Multicast => "a multicast or broadcast address",
            Refusal::Metadata => "a cloud metadata address",
            Refusal::Hostname => "a host name (only IP addresses are accepted)",
        })
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the relay may send to (or announce) `ip`.
pub(crate) fn check_ip(ip: IpAddr, allow_loopback: bool) -> Result<(), Refusal> {
    let ip = canonical(ip);
    if METADATA.contains(&ip) {
        return Err(Refusal::Metadata);
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() {
                Err(Refusal::Unspecified)
            } else if v4.is_loopback() {
                if allow_loopback {
                    Ok(())
                } else {
                    Err(Refusal::Loopback)
                }
            } else if v4.is_link_local() {
                // 169.254.0.0/16 holds the metadata service of AWS, GCP, Azure, OpenStack.
                if v4 == Ipv4Addr::new(169, 254, 169, 254) {
                    Err(Refusal::Metadata)
                } else {
                    Err(Refusal::LinkLocal)
                }
            } else if v4.is_multicast() || v4.is_broadcast() {
                Err(Refusal::Multicast)
            } else {
                Ok(())
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Err(Refusal::Unspecified)
            } else if v6.is_loopback() {
                if allow_loopback {
                    Ok(())
                } else {
                    Err(Refusal::Loopback)
                }
            } else if v6.is_unicast_link_local() {
                Err(Refusal::LinkLocal)
            } else if v6.is_multicast() {
                Err(Refusal::Multicast)
            } else {
                Ok(())
            }
        }
    }
}

/// What to do with one `candidate:` line a client sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Use,
    /// An mDNS name (`….local`) that browsers use to hide host addresses.
    /// The relay does not resolve mDNS, so it is dropped without error: the
    /// browser's packets still reach the relay as peer-reflexive candidates.
    Ignore,
    Refuse {
        address: String,
        why: Refusal,
    },
}

/// Judges a candidate line (`candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY
/// ADDRESS PORT typ TYPE …`, with or without a leading `a=`).
pub(crate) fn judge_candidate(line: &str, allow_loopback: bool) -> Verdict {
    let line = line.trim();
    let line = line.strip_prefix("a=").unwrap_or(line);
    let Some(address) = line.split_ascii_whitespace().nth(4) else {
        // Malformed: the ICE agent refuses it with its own reason.
        return Verdict::Use;
    };
    let refuse = |why| Verdict::Refuse {
        address: address.to_owned(),
        why,
    };
    match address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => match check_ip(ip, allow_loopback) {
            Ok(()) => Verdict::Use,
            Err(why) => refuse(why),
        },
        Err(_) if address.to_ascii_lowercase().ends_with(".local") => Verdict::Ignore,
        Err(_) => refuse(Refusal::Hostname),
    }
}

/// An offer with the candidates the relay will not use taken out.
pub(crate) struct FilteredOffer {
    pub sdp: String,
    pub kept: usize,
    /// The first refused candidate's address and why, if any was refused.
    pub refused: Option<(String, Refusal)>,
}

/// Takes refused and ignored candidates out of an offer: the relay never
/// checks them, and the rest of the offer stays usable.
pub(crate) fn filter_offer(sdp: &str, allow_loopback: bool) -> FilteredOffer {
    let mut out = String::with_capacity(sdp.len());
    let (mut kept, mut refused) = (0, None);
    for line in sdp.split_inclusive('\n') {
        if line.trim_start().starts_with("a=candidate:") {
            match judge_candidate(line, allow_loopback) {
                Verdict::Use => kept += 1,
                Verdict::Ignore => continue,
                Verdict::Refuse { address, why } => {
                    refused.get_or_insert((address, why));
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    FilteredOffer {
        sdp: out,
        kept,
        refused,
    }
}

/// Whether loopback is announced and accepted: when the operator named a
/// loopback interface, or (no interface named) when the host has no other
/// address, which is the case in a loopback-only test namespace.
/// `interfaces` lists (name, address) pairs of the host.
pub(crate) fn loopback_allowed(named: &[String], interfaces: &[(String, IpAddr)]) -> bool {
    if named.is_empty() {
        interfaces
            .iter()
            .all(|(_, ip)| check_ip(*ip, true).is_err() || ip.is_loopback())
    } else {
        interfaces
            .iter()
            .any(|(name, ip)| ip.is_loopback() && named.contains(name))
    }
}

/// The host's interfaces and their addresses (empty if they cannot be read).
pub(crate) fn host_interfaces() -> Vec<(String, IpAddr)> {
    match webrtc::util::ifaces::ifaces() {
        Ok(list) => list
            .into_iter()
            .filter_map(|i| Some((i.name, i.addr?.ip())))
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot list network interfaces");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> Option<Refusal> {
        match judge_candidate(line, false) {
            Verdict::Refuse { why, .. } => Some(why),
            _ => None,
        }
    }

    #[test]
    fn dangerous_candidates_are_refused() {
        let host = |addr: &str| format!("candidate:1 1 udp 2130706431 {addr} 50000 typ host");
        assert_eq!(refused(&host("127.0.0.1")), Some(Refusal::Loopback));
        assert_eq!(refused(&host("::1")), Some(Refusal::Loopback));
        assert_eq!(refused(&host("::ffff:127.0.0.1")), Some(Refusal::Loopback));
        assert_eq!(refused(&host("169.254.169.254")), Some(Refusal::Metadata));
        assert_eq!(refused(&host("fd00:ec2::254")), Some(Refusal::Metadata));
        assert_eq!(refused(&host("169.254.10.1")), Some(Refusal::LinkLocal));
        assert_eq!(refused(&host("fe80::1")), Some(Refusal::LinkLocal));
        assert_eq!(refused(&host("224.0.0.251")), Some(Refusal::Multicast));
        assert_eq!(refused(&host("255.255.255.255")), Some(Refusal::Multicast));
        assert_eq!(refused(&host("ff02::1")), Some(Refusal::Multicast));
        assert_eq!(refused(&host("0.0.0.0")), Some(Refusal::Unspecified));
        assert_eq!(refused(&host("::")), Some(Refusal::Unspecified));
        assert_eq!(
            refused(&host("metadata.google.internal")),
            Some(Refusal::Hostname)
        );
        assert_eq!(
            judge_candidate(&host("1f2e3d4c-aaaa.local"), false),
            Verdict::Ignore
        );
        assert_eq!(
            judge_candidate(&format!("a={}", host("192.0.2.7")), false),
            Verdict::Use
        );
        assert_eq!(judge_candidate(&host("2001:db8::7"), false), Verdict::Use);
        assert_eq!(judge_candidate(&host("127.0.0.1"), true), Verdict::Use);
        // Loopback permission never opens the metadata service.
        assert_eq!(
            judge_candidate(&host("169.254.169.254"), true),
            Verdict::Refuse {
                address: "169.254.169.254".into(),
                why: Refusal::Metadata
            }
        );
    }

    #[test]
    fn offers_lose_only_their_refused_candidates() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 1 192.0.2.7 5000 typ host\r\na=candidate:2 1 udp 1 169.254.169.254 80 typ host\r\na=candidate:3 1 udp 1 abc.local 5000 typ host\r\na=end-of-candidates\r\n";
        let filtered = filter_offer(sdp, false);
        assert_eq!(filtered.kept, 1);
        assert_eq!(
            filtered.refused,
            Some(("169.254.169.254".into(), Refusal::Metadata))
        );
        assert_eq!(
            filtered.sdp,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 1 192.0.2.7 5000 typ host\r\na=end-of-candidates\r\n"
        );
    }

    #[test]
    fn loopback_only_where_it_is_all_there_is_or_named() {
        let lo = ("lo".to_owned(), IpAddr::from([127, 0, 0, 1]));
        let eth = ("eth0".to_owned(), IpAddr::from([192, 0, 2, 5]));
        let ll = ("eth0".to_owned(), "fe80::1".parse().expect("ip"));
        assert!(loopback_allowed(&[], std::slice::from_ref(&lo)));
        assert!(loopback_allowed(&[], &[lo.clone(), ll.clone()]));
        assert!(!loopback_allowed(&[], &[lo.clone(), eth.clone()]));
        assert!(loopback_allowed(&["lo".into()], &[lo.clone(), eth.clone()]));
        assert!(!loopback_allowed(&["eth0".into()], &[lo, eth]));
    }
}
