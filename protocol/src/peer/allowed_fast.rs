//! The BEP 6 canonical allowed-fast set: which pieces a choked peer may still request from us.
//!
//! Computed from the peer's IPv4 address (its /24), the info hash and the piece count, exactly as
//! BEP 6 specifies, so both sides agree on the set without negotiating it.

use core::net::Ipv4Addr;

use sha1::{Digest, Sha1};

use crate::metainfo::InfoHash;

/// BEP 6's allowed-fast set of size `k` for a peer at `ip` (at most `piece_count` pieces).
pub fn allowed_fast_set(
    ip: Ipv4Addr,
    info_hash: &InfoHash,
    piece_count: u32,
    k: usize,
) -> Vec<u32> {
    let k = k.min(piece_count as usize);
    let mut set = Vec::with_capacity(k);
    if k == 0 {
        return set;
    }
    // x = 0xFFFFFF00 & ip, then x + infohash, hashed repeatedly.
    let masked = u32::from(ip) & 0xffff_ff00;
    let mut x: Vec<u8> = masked.to_be_bytes().to_vec();
    x.extend_from_slice(info_hash.as_bytes());
    while set.len() < k {
        let digest: [u8; 20] = Sha1::digest(&x).into();
        for chunk in digest.chunks_exact(4) {
            if set.len() >= k {
                break;
            }
            let y = u32::from_be_bytes(chunk.try_into().expect("4-byte chunk"));
            let index = y % piece_count;
            if !set.contains(&index) {
                set.push(index);
            }
        }
        x = digest.to_vec();
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_bep_6_test_vector() {
        // Proves the algorithm against BEP 6's own example: 1313 pieces, IP 80.4.4.200, info hash
        // all 0xaa.
        let hash = InfoHash([0xaa; 20]);
        let ip = Ipv4Addr::new(80, 4, 4, 200);
        assert_eq!(
            allowed_fast_set(ip, &hash, 1313, 7),
            [1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(ip, &hash, 1313, 9),
            [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
    }

    #[test]
    fn small_torrents_do_not_loop_forever() {
        // Proves k is capped by the piece count, so a 3-piece torrent terminates with all 3.
        let mut set = allowed_fast_set(Ipv4Addr::LOCALHOST, &InfoHash([1; 20]), 3, 10);
        set.sort_unstable();
        assert_eq!(set, [0, 1, 2]);
        assert!(allowed_fast_set(Ipv4Addr::LOCALHOST, &InfoHash([1; 20]), 0, 10).is_empty());
    }
}
