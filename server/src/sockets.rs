//! Who holds this node's WebSocket slots: a total with a share only staff may take, a cap per
//! token and a cap per client address for patients. A slot is held for as long as its socket
//! lives and given back when the [`SocketSlot`] drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::broker::lock;
use crate::client::AddressKey;
use crate::config::Limits;
use crate::model::{Role, UserId};

/// Why an upgrade got no slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoSlot {
    #[error("this node has no WebSocket slot left; try again shortly or another node")]
    NodeFull,
    #[error("this node's remaining WebSocket slots are kept for staff; try again shortly")]
    StaffOnly,
    #[error("this link already has {0} connections open here; close one (another tab?) first")]
    TokenBusy(usize),
    #[error("{0} connections from your network are open here already; try again later")]
    AddressBusy(usize),
}

impl NoSlot {
    /// Whether the node as a whole is full (`503`) rather than this client over its share (`429`).
    pub fn node_wide(&self) -> bool {
        matches!(self, NoSlot::NodeFull | NoSlot::StaffOnly)
    }
}

pub struct SocketSlots {
    total: usize,
    staff_only: usize,
    per_token: usize,
    per_address: usize,
    /// One std mutex for the three counts, so a slot is taken or refused in one step; held for a
    /// few map operations, never across an await.
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    open: usize,
    /// Patient tokens with sockets open; entries at zero are removed, so the maps are as large
    /// as the open sockets.
    tokens: HashMap<UserId, usize>,
    addresses: HashMap<AddressKey, usize>,
}

/// One socket's slot; dropping it gives the slot back.
pub struct SocketSlot {
    slots: Arc<SocketSlots>,
    /// `Some` for a patient: the counts it holds beyond the total.
    patient: Option<(UserId, AddressKey)>,
}

impl SocketSlots {
    pub fn new(limits: &Limits) -> SocketSlots {
        SocketSlots {
            total: limits.max_connections,
            staff_only: limits.staff_connections.min(limits.max_connections),
            per_token: limits.connections_per_token,
            per_address: limits.connections_per_address,
            counts: Mutex::default(),
        }
    }

    /// A slot for a socket of `role` holding token `holder`, from `address`. Staff count only
    /// against the total: their links are secrets, shared by a team and opened in several tabs.
    pub fn take(
        self: &Arc<Self>,
        role: Role,
        holder: UserId,
        address: AddressKey,
    ) -> Result<SocketSlot, NoSlot> {
        let mut counts = lock(&self.counts);
        if counts.open >= self.total {
            return Err(NoSlot::NodeFull);
        }
        if role.is_staff() {
            counts.open += 1;
            return Ok(SocketSlot {
                slots: self.clone(),
                patient: None,
            });
        }
        if counts.open >= self.total - self.staff_only {
            return Err(NoSlot::StaffOnly);
        }
        if counts
            .tokens
            .get(&holder)
            .is_some_and(|&n| n >= self.per_token)
        {
            return Err(NoSlot::TokenBusy(self.per_token));
        }
        if counts
            .addresses
            .get(&address)
            .is_some_and(|&n| n >= self.per_address)
        {
            return Err(NoSlot::AddressBusy(self.per_address));
        }
        counts.open += 1;
        *counts.tokens.entry(holder).or_default() += 1;
        *counts.addresses.entry(address).or_default() += 1;
        Ok(SocketSlot {
            slots: self.clone(),
            patient: Some((holder, address)),
        })
    }

    /// Sockets open on this node.
    pub fn open(&self) -> usize {
        lock(&self.counts).open
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.slots.counts);
        counts.open = counts.open.saturating_sub(1);
        if let Some((holder, address)) = self.patient {
            release(&mut counts.tokens, holder);
            release(&mut counts.addresses, address);
        }
    }
}

fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn slots(total: usize, staff: usize, token: usize, address: usize) -> Arc<SocketSlots> {
        Arc::new(SocketSlots::new(&Limits {
            max_connections: total,
            staff_connections: staff,
            connections_per_token: token,
            connections_per_address: address,
            ..Limits::default()
        }))
    }

    fn addr(s: &str) -> AddressKey {
        AddressKey::of(s.parse().unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn the_last_slots_are_for_staff() {
        let s = slots(3, 1, 10, 10);
        let a = addr("198.51.100.1");
        let held: Vec<_> = (0..2)
            .map(|_| s.take(Role::Patient, Uuid::now_v7(), a))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.take(Role::Patient, Uuid::now_v7(), a).err(),
            Some(NoSlot::StaffOnly)
        );
        let staff = s.take(Role::Moderator, Uuid::now_v7(), a);
        assert!(staff.is_ok());
        assert_eq!(
            s.take(Role::Expert, Uuid::now_v7(), a).err(),
            Some(NoSlot::NodeFull)
        );
        drop(held);
        assert_eq!(s.open(), 1);
    }

    #[test]
    fn a_token_and_an_address_hold_at_most_their_share_until_they_let_go() {
        let s = slots(100, 0, 2, 3);
        let (me, net) = (Uuid::now_v7(), addr("2001:db8::1"));
        let first = s.take(Role::Patient, me, net);
        let _second = s.take(Role::Patient, me, net);
        assert_eq!(
            s.take(Role::Patient, me, net).err(),
            Some(NoSlot::TokenBusy(2))
        );
        // Another token on another address of the same /64 is the same network.
        let _third = s.take(Role::Patient, Uuid::now_v7(), addr("2001:db8::2"));
        assert_eq!(
            s.take(Role::Patient, Uuid::now_v7(), net).err(),
            Some(NoSlot::AddressBusy(3))
        );
        drop(first);
        assert!(s.take(Role::Patient, me, net).is_ok());
        assert!(
            s.take(Role::Patient, Uuid::now_v7(), addr("198.51.100.1"))
                .is_ok()
        );
    }
}
