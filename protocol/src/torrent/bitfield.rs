//! [`Bitfield`]: which pieces a peer (or we) have, in the BEP 3 wire layout.
//!
//! Invariants: the length in pieces is fixed at creation; spare bits past the last piece are always
//! zero (BEP 3 requires a peer to send them cleared, and [`Bitfield::from_wire`] refuses them
//! otherwise); the count of set bits is kept up to date, so `count`/`is_complete` are O(1).
//! Memory is `ceil(len / 8)` bytes, bounded by the torrent's piece count.

/// Why a peer's `bitfield` message is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    /// BEP 3: the bitfield has one bit per piece, rounded up to whole bytes.
    #[error("bitfield is {received} bytes; {expected} are needed for {pieces} pieces")]
    WrongLength {
        /// Bytes received.
        received: usize,
        /// Bytes the piece count needs.
        expected: usize,
        /// The torrent's piece count.
        pieces: u32,
    },
    /// BEP 3: "Spare bits at the end are set to zero. Clients should drop the connection if they
    /// receive bitfields that are not of the correct size, or if the bitfield has any of the spare
    /// bits set."
    #[error("bitfield has spare bits set past the last piece")]
    SpareBitsSet,
}

/// One bit per piece, most significant bit of byte 0 first (BEP 3).
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    /// An empty bitfield (no pieces) for `len` pieces.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; Self::byte_len(len)],
            len,
            ones: 0,
        }
    }

    /// A full bitfield (every piece) for `len` pieces: a seeder's, or BEP 6 `have all`.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield {
            bytes: vec![0xff; Self::byte_len(len)],
            len,
            ones: len,
        };
        b.clear_spare_bits();
        b
    }

    /// Bytes needed on the wire for `len` pieces.
    pub fn byte_len(len: u32) -> usize {
        (len as usize).div_ceil(8)
    }

    /// Validates a peer's `bitfield` payload for a torrent of `len` pieces.
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = Self::byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                received: bytes.len(),
                expected,
                pieces: len,
            });
        }
        let spare = (expected * 8) as u64 - u64::from(len);
        if spare > 0 {
            let mask = (1u8 << spare) - 1;
            if bytes[expected - 1] & mask != 0 {
                return Err(BitfieldError::SpareBitsSet);
            }
        }
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones: bytes.iter().map(|b| b.count_ones()).sum(),
        })
    }

    fn clear_spare_bits(&mut self) {
        let spare = self.bytes.len() * 8 - self.len as usize;
        if spare > 0 {
            let last = self.bytes.len() - 1;
            self.bytes[last] &= !((1u8 << spare) - 1);
        }
    }

    /// The wire form: `ceil(len / 8)` bytes, spare bits zero.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of pieces this bitfield covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it covers no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many pieces are set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Whether every piece is set.
    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }

    /// Whether no piece is set.
    pub fn is_clear(&self) -> bool {
        self.ones == 0
    }

    /// Whether piece `index` is set; `false` past the end.
    pub fn get(&self, index: u32) -> bool {
        index < self.len && self.bytes[(index / 8) as usize] & (0x80 >> (index % 8)) != 0
    }

    /// Sets piece `index`; returns whether it was newly set. Past the end it does nothing and
    /// returns `false`.
    pub fn set(&mut self, index: u32) -> bool {
        if index >= self.len || self.get(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] |= 0x80 >> (index % 8);
        self.ones += 1;
        true
    }

    /// Clears piece `index`; returns whether it was set.
    pub fn clear(&mut self, index: u32) -> bool {
        if !self.get(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] &= !(0x80 >> (index % 8));
        self.ones -= 1;
        true
    }

    /// The set pieces, in ascending order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes.iter().enumerate().flat_map(|(i, &byte)| {
            let base = i as u32 * 8;
            BitIter(byte).map(move |bit| base + bit)
        })
    }

    /// The pieces set here and in neither `a` nor `b`, in order: what a peer has that we neither
    /// have nor are checking, a byte at a time. `a` and `b` must cover as many pieces as this one
    /// (a missing byte counts as empty).
    pub fn ones_without<'a>(
        &'a self,
        a: &'a Bitfield,
        b: &'a Bitfield,
    ) -> impl Iterator<Item = u32> + 'a {
        self.bytes.iter().enumerate().flat_map(move |(i, &byte)| {
            let mask = a.bytes.get(i).copied().unwrap_or(0) | b.bytes.get(i).copied().unwrap_or(0);
            let base = i as u32 * 8;
            BitIter(byte & !mask).map(move |bit| base + bit)
        })
    }

    /// How many pieces `other` has that this one lacks (what we could get from a peer). Both must
    /// cover the same number of pieces; otherwise 0, as [`Bitfield::lacks_any_of`] says `false`.
    pub fn count_lacked(&self, other: &Bitfield) -> u32 {
        if self.len != other.len {
            return 0;
        }
        self.bytes
            .iter()
            .zip(&other.bytes)
            .map(|(mine, theirs)| (theirs & !mine).count_ones())
            .sum()
    }

    /// Whether `other` has any piece this one lacks (whether we are interested in a peer).
    /// Both must cover the same number of pieces; otherwise `false`.
    pub fn lacks_any_of(&self, other: &Bitfield) -> bool {
        self.len == other.len
            && self
                .bytes
                .iter()
                .zip(&other.bytes)
                .any(|(mine, theirs)| theirs & !mine != 0)
    }
}

/// The set bit positions of one byte, most significant first (0 = 0x80).
struct BitIter(u8);

impl Iterator for BitIter {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.leading_zeros();
        self.0 &= !(0x80 >> bit);
        Some(bit)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::mutation::check_accepts_some;

    use super::*;

    #[test]
    fn wire_layout_is_msb_first() {
        // Proves BEP 3's layout: piece 0 is the high bit of the first byte.
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(Bitfield::full(10).as_bytes(), &[0xff, 0xc0]);
        assert_eq!(Bitfield::full(16).as_bytes(), &[0xff, 0xff]);
    }

    #[test]
    fn refuses_wrong_length_and_spare_bits() {
        // Proves the two BEP 3 reasons to drop a peer's bitfield.
        assert_eq!(
            Bitfield::from_wire(&[0xff], 10),
            Err(BitfieldError::WrongLength {
                received: 1,
                expected: 2,
                pieces: 10
            })
        );
        assert_eq!(
            Bitfield::from_wire(&[0xff, 0xe0], 10),
            Err(BitfieldError::SpareBitsSet)
        );
        assert!(
            Bitfield::from_wire(&[0xff, 0xc0], 10)
                .unwrap()
                .is_complete()
        );
        assert!(Bitfield::from_wire(&[], 0).unwrap().is_complete());
    }

    #[test]
    fn interest_follows_missing_pieces() {
        // Proves lacks_any_of is true exactly when the other side has a piece we lack.
        let mut ours = Bitfield::new(9);
        let mut theirs = Bitfield::new(9);
        assert!(!ours.lacks_any_of(&theirs));
        theirs.set(8);
        assert!(ours.lacks_any_of(&theirs));
        ours.set(8);
        assert!(!ours.lacks_any_of(&theirs));
        assert!(!ours.lacks_any_of(&Bitfield::full(10)));
    }

    proptest! {
        #[test]
        fn agrees_with_a_vec_of_bools(len in 0u32..200, ops in proptest::collection::vec((any::<bool>(), 0u32..210), 0..300)) {
            // Proves get/set/clear/count/ones/wire round trip against a plain model.
            let mut b = Bitfield::new(len);
            let mut model = vec![false; len as usize];
            for (on, i) in ops {
                let in_range = (i as usize) < model.len();
                if on {
                    let newly = in_range && !model[i as usize];
                    prop_assert_eq!(b.set(i), newly);
                    if in_range { model[i as usize] = true; }
                } else {
                    let was = in_range && model[i as usize];
                    prop_assert_eq!(b.clear(i), was);
                    if in_range { model[i as usize] = false; }
                }
            }
            for (i, &m) in model.iter().enumerate() {
                prop_assert_eq!(b.get(i as u32), m);
            }
            prop_assert_eq!(b.count() as usize, model.iter().filter(|m| **m).count());
            let ones: Vec<u32> = b.ones().collect();
            let expected: Vec<u32> = (0..len).filter(|&i| model[i as usize]).collect();
            prop_assert_eq!(ones, expected);
            prop_assert_eq!(Bitfield::from_wire(b.as_bytes(), len), Ok(b.clone()));
        }

        #[test]
        fn ones_without_is_the_filtered_ones(
            len in 0u32..200,
            sets in proptest::collection::vec(proptest::collection::vec(0u32..200, 0..120), 3),
        ) {
            // Proves the byte-wise candidate scan equals filtering `ones` by the two masks.
            let make = |ix: &[u32]| {
                let mut b = Bitfield::new(len);
                for &i in ix {
                    b.set(i);
                }
                b
            };
            let (peer, have, hashing) = (make(&sets[0]), make(&sets[1]), make(&sets[2]));
            let fast: Vec<u32> = peer.ones_without(&have, &hashing).collect();
            let slow: Vec<u32> = peer.ones().filter(|&i| !have.get(i) && !hashing.get(i)).collect();
            prop_assert_eq!(fast, slow);
        }

    }

    #[test]
    fn from_wire_accepts_exactly_valid_payloads() {
        // Proves a peer's payload is accepted iff it has the right length and no spare bit set,
        // and then holds exactly those bits; payloads of every kind are drawn, so both occur.
        let payload = (0u32..320, any::<[u8; 41]>(), -1isize..=1, any::<bool>());
        check_accepts_some(256, payload, |(len, raw, delta, clear_spare)| {
            let expected = Bitfield::byte_len(len);
            let mut bytes = raw[..expected.saturating_add_signed(delta)].to_vec();
            let spare = expected * 8 - len as usize;
            if clear_spare && bytes.len() == expected && spare > 0 {
                bytes[expected - 1] &= !((1u8 << spare) - 1);
            }
            let valid = bytes.len() == expected
                && (spare == 0 || bytes[expected - 1] & ((1u8 << spare) - 1) == 0);
            let result = Bitfield::from_wire(&bytes, len);
            prop_assert_eq!(result.is_ok(), valid, "{:?}", result);
            if let Ok(b) = result {
                prop_assert_eq!(b.as_bytes(), &bytes[..]);
                let ones: Vec<u32> = (0..len)
                    .filter(|&i| bytes[i as usize / 8] & (0x80 >> (i % 8)) != 0)
                    .collect();
                prop_assert_eq!(b.ones().collect::<Vec<_>>(), ones.clone());
                prop_assert_eq!(b.count() as usize, ones.len());
            }
            Ok(valid)
        });
    }
}
