//! Open connections per client address, for `limits.max_connections_per_client`: one address
//! cannot hold more than its share of `limits.max_connections`.
//!
//! The address is the connection's own (the TCP peer, or the PROXY protocol source), never a
//! forwarding header: one connection from a proxy carries many clients. Trusted proxies are not
//! counted here at all (the listener skips them).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Connections open now, by client address; an address leaves the table with its last one.
#[derive(Debug, Default)]
pub(super) struct Clients {
    open: Mutex<HashMap<IpAddr, usize>>,
}

// === impl Clients ===

impl Clients {
    /// Takes one of `ip`'s places, or `None` when it has `cap` connections open already.
    pub(super) fn try_take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

/// One of a client's places; given back on drop.
#[derive(Debug)]
pub(super) struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .clients
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_at_its_cap_is_refused_and_others_are_not() {
        let clients = Arc::new(Clients::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let mut held: Vec<_> = (0..3).map(|_| clients.try_take(a, 3).unwrap()).collect();
        assert!(clients.try_take(a, 3).is_none());
        assert!(
            clients.try_take(b, 3).is_some(),
            "another client has its own share"
        );
        drop(held.pop());
        assert_eq!(clients.open(a), 2);
        assert!(
            clients.try_take(a, 3).is_some(),
            "a place given back is free again"
        );
    }

    #[test]
    fn last_slot_removes_the_address() {
        let clients = Arc::new(Clients::default());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let slot = clients.try_take(a, 1).unwrap();
        drop(slot);
        assert!(
            clients
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        );
    }
}
