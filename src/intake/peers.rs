//! Per-peer bookkeeping, in memory only (docs/threat-model.md): how peers are
//! keyed, which peers are proxies that carry many reporters, and counted
//! places per peer (connections, uploads).
//!
//! Behind a reverse proxy or tor on the same host every reporter arrives
//! from the proxy's address. Capping that address would cap everyone at
//! once, so addresses in `[limits] proxy_peers` are not capped per peer
//! here; the proxy caps per client address itself (deploy/nginx.conf:
//! `limit_conn`, `limit_req`). The global caps still apply to them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The key a peer is counted under: IPv6 peers per /64, which one host
/// usually holds whole; IPv4-mapped IPv6 addresses as IPv4.
pub fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
        v4 => v4,
    }
}

/// Whether `peer` is one of the configured proxies (compared exactly,
/// IPv4-mapped addresses as IPv4).
pub fn is_proxy(proxies: &[IpAddr], peer: IpAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let peer = plain(peer);
    proxies.iter().any(|p| plain(*p) == peer)
}

/// At most `cap` places held at once by each peer (proxies excepted).
pub struct PeerSlots {
    cap: usize,
    proxies: Vec<IpAddr>,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerSlots {
    pub fn new(cap: usize, proxies: Vec<IpAddr>) -> Arc<PeerSlots> {
        Arc::new(PeerSlots {
            cap,
            proxies,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A place for `peer`, or `None` when it already holds `cap`. The
    /// place is given back when the [`PeerSlot`] drops.
    pub fn try_take(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        if is_proxy(&self.proxies, peer) {
            return Some(PeerSlot {
                slots: None,
                key: peer,
            });
        }
        let key = peer_key(peer);
        let mut held = self.lock();
        let count = held.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            slots: Some(self.clone()),
            key,
        })
    }

    /// Places held by `peer` now (for tests and logs of counts only).
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.lock().get(&peer_key(peer)).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        match self.held.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// One place held by a peer; given back on drop.
pub struct PeerSlot {
    /// `None` for a proxy, which is not counted.
    slots: Option<Arc<PeerSlots>>,
    key: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(slots) = self.slots.take() else {
            return;
        };
        let mut held = slots.lock();
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_peers_share_a_slash_64() {
        let a = peer_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = peer_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(
            peer_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn each_peer_holds_at_most_its_cap_and_gets_places_back() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let slots = PeerSlots::new(2, vec![proxy]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none(), "a third place for one peer");
        assert!(slots.try_take(b).is_some(), "another peer is not affected");
        drop(first);
        assert_eq!(slots.held_by(a), 1);
        assert!(slots.try_take(a).is_some());
        // A proxy carries many reporters: never capped here.
        let many: Vec<_> = (0..10).filter_map(|_| slots.try_take(proxy)).collect();
        assert_eq!(many.len(), 10);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(is_proxy(&[proxy], mapped));
        assert_eq!(slots.held_by(proxy), 0);
    }
}
