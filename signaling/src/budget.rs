//! Viewer budgets: how many WHEP viewers one token, one client address and one
//! session may hold at once on this node. Without them a single patient token
//! could open viewers until the relay's UDP ports ran out and every later
//! viewer got a black screen.
//!
//! A [`Slot`] is taken before negotiation starts (so concurrent requests cannot
//! overshoot) and given back when it is dropped: with the viewer, or with the
//! request that failed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use crate::error::ApiError;

/// The limits, from [`RelayConfig`](crate::RelayConfig).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub per_token: usize,
    pub per_address: usize,
    pub per_session: usize,
}

/// A client address as budgets count it: IPv4 whole, IPv6 by its /64 (one
/// subscriber usually holds a whole /64, so counting single addresses would
/// let one client be many).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddressKey(IpAddr);

impl AddressKey {
    pub(crate) fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressKey(IpAddr::V6(prefix.into()))
                }
            },
            v4 => AddressKey(v4),
        }
    }
}

/// A token as budgets count it: a digest, so the table holds no bearer secrets.
type TokenKey = [u8; 32];

fn token_key(token: &str) -> TokenKey {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[derive(Default)]
struct Counts {
    tokens: HashMap<TokenKey, usize>,
    addresses: HashMap<AddressKey, usize>,
    sessions: HashMap<String, usize>,
}

/// The node's viewer counts. One plain mutex: every operation is a few map
/// updates and never awaits.
pub(crate) struct Budgets {
    caps: Caps,
    counts: Mutex<Counts>,
}

/// One viewer's share of the budgets, given back on drop.
pub(crate) struct Slot {
    budgets: Arc<Budgets>,
    token: TokenKey,
    address: Option<AddressKey>,
    session: String,
}

impl Budgets {
    pub(crate) fn new(caps: Caps) -> Arc<Budgets> {
        Arc::new(Budgets {
            caps,
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Every update is a complete map operation, so a poisoned lock holds consistent data.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a viewer slot, or says which budget is spent.
    pub(crate) fn take(
        self: &Arc<Self>,
        session: &str,
        token: &str,
        address: Option<IpAddr>,
    ) -> Result<Slot, ApiError> {
        let token = token_key(token);
        let address = address.map(AddressKey::of);
        let mut counts = self.counts();
        let in_session = counts.sessions.get(session).copied().unwrap_or(0);
        if in_session >= self.caps.per_session {
            return Err(ApiError::Limit {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "session_full",
                message: format!(
                    "this session already has {} viewers on this server; try again later",
                    self.caps.per_session
                ),
            });
        }
        if let Some(address) = address
            && counts.addresses.get(&address).copied().unwrap_or(0) >= self.caps.per_address
        {
            return Err(ApiError::Limit {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_viewers_from_address",
                message: format!(
                    "{} viewers are already watching from this network address; close one first",
                    self.caps.per_address
                ),
            });
        }
        if counts.tokens.get(&token).copied().unwrap_or(0) >= self.caps.per_token {
            return Err(ApiError::Limit {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_viewers_for_token",
                message: format!(
                    "this link already has {} viewers open; close one (DELETE its resource) first",
                    self.caps.per_token
                ),
            });
        }
        *counts.sessions.entry(session.to_owned()).or_default() += 1;
        if let Some(address) = address {
            *counts.addresses.entry(address).or_default() += 1;
        }
        *counts.tokens.entry(token).or_default() += 1;
        Ok(Slot {
            budgets: self.clone(),
            token,
            address,
            session: session.to_owned(),
        })
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        let counts = self.counts();
        counts.tokens.is_empty() && counts.addresses.is_empty() && counts.sessions.is_empty()
    }
}

/// Decrements a count, removing the entry at zero so the tables only hold
/// what is in use.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.budgets.counts();
        release(&mut counts.tokens, &self.token);
        if let Some(address) = &self.address {
            release(&mut counts.addresses, address);
        }
        release(&mut counts.sessions, &self.session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<Slot, ApiError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(ApiError::Limit { code, .. }) => code,
            Err(_) => "other",
        }
    }

    #[test]
    fn each_budget_holds_and_comes_back() {
        let budgets = Budgets::new(Caps {
            per_token: 2,
            per_address: 3,
            per_session: 4,
        });
        let a: IpAddr = "2001:db8:1:2::10".parse().expect("ip");
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        let t1 = budgets.take("s", "t1", Some(a)).expect("slot");
        let t1b = budgets.take("s", "t1", Some(a)).expect("slot");
        assert_eq!(
            code(budgets.take("s", "t1", Some(other))),
            "too_many_viewers_for_token"
        );
        let t2 = budgets.take("s", "t2", Some(same_64)).expect("slot");
        assert_eq!(
            code(budgets.take("s", "t3", Some(a))),
            "too_many_viewers_from_address"
        );
        let t3 = budgets.take("s", "t3", Some(other)).expect("slot");
        assert_eq!(code(budgets.take("s", "t4", None)), "session_full");
        assert_eq!(code(budgets.take("s2", "t4", None)), "ok");
        drop(t1);
        assert_eq!(code(budgets.take("s", "t1", Some(other))), "ok");
        drop((t1b, t2, t3));
        assert!(budgets.is_empty());
    }
}
