//! [`AddrKey`]: a peer's socket address packed into 23 bytes, for sets and maps that hold many
//! of them (the peer list's thousands of addresses a torrent, the addresses PEX told each peer).
//!
//! A `SocketAddr` takes 32 bytes (an IPv6 address with its flow label and scope id, tagged), and a
//! B-tree node holds eleven keys whatever their use: at a thousand peers a torrent the difference
//! is tens of kilobytes per torrent, and in the simulator, which holds a thousand clients, tens of
//! megabytes.
//!
//! Invariants:
//! - keys order exactly as their `SocketAddr`s do (IPv4 before IPv6, then address, then port),
//!   so a collection keyed by them iterates in the same order as one keyed by `SocketAddr`;
//! - [`AddrKey::addr`] gives back the address it was made from, but for an IPv6 flow label,
//!   which is not kept (it names no peer; two addresses that differ only there are one key).

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A socket address in 23 bytes: see the module docs.
///
/// Layout: a tag (0 for IPv4, 1 for IPv6), the address (4 or 16 bytes), the port (big-endian),
/// then for IPv6 the scope id (big-endian); unused bytes are zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AddrKey([u8; 23]);

impl AddrKey {
    /// The key of `addr`.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        let mut b = [0u8; 23];
        match addr {
            SocketAddr::V4(a) => {
                b[1..5].copy_from_slice(&a.ip().octets());
                b[5..7].copy_from_slice(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                b[0] = 1;
                b[1..17].copy_from_slice(&a.ip().octets());
                b[17..19].copy_from_slice(&a.port().to_be_bytes());
                b[19..23].copy_from_slice(&a.scope_id().to_be_bytes());
            }
        }
        AddrKey(b)
    }

    /// The address (an IPv6 one without its flow label).
    pub(crate) fn addr(self) -> SocketAddr {
        let b = &self.0;
        if b[0] == 0 {
            let ip = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([b[5], b[6]])))
        } else {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[1..17]);
            let port = u16::from_be_bytes([b[17], b[18]]);
            let scope = u32::from_be_bytes([b[19], b[20], b[21], b[22]]);
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, scope))
        }
    }
}

impl From<SocketAddr> for AddrKey {
    fn from(addr: SocketAddr) -> Self {
        AddrKey::new(addr)
    }
}

impl core::fmt::Debug for AddrKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<SocketAddr> {
        [
            "0.0.0.0:0",
            "1.2.3.4:5",
            "1.2.3.4:6881",
            "1.2.3.5:1",
            "10.0.0.1:65535",
            "255.255.255.255:65535",
            "[::]:0",
            "[::1]:6881",
            "[::ffff:1.2.3.4]:5",
            "[2001:db8::1]:1",
            "[2001:db8::1]:2",
            "[fe80::1%2]:6881",
            "[fe80::1%3]:6881",
            "[ffff::]:0",
        ]
        .iter()
        .map(|s| s.parse().expect("sample addresses parse"))
        .collect()
    }

    #[test]
    fn a_key_gives_back_its_address() {
        for a in samples() {
            assert_eq!(AddrKey::new(a).addr(), a);
        }
    }

    #[test]
    fn keys_order_as_their_addresses() {
        let addrs = samples();
        for a in &addrs {
            for b in &addrs {
                assert_eq!(
                    AddrKey::new(*a).cmp(&AddrKey::new(*b)),
                    a.cmp(b),
                    "{a} against {b}"
                );
            }
        }
    }

    #[test]
    fn a_flow_label_is_not_kept() {
        let a = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1, 7, 0));
        let b = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1, 0, 0));
        assert_eq!(AddrKey::new(a), AddrKey::new(b));
        assert_eq!(AddrKey::new(a).addr(), b);
    }
}
