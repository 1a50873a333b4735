//! [`Seq`]: uTP's 16-bit sequence and acknowledgement numbers, which wrap.
//!
//! BEP 29 numbers packets modulo 2^16, so "before" is only meaningful for numbers less than half
//! the space apart. [`Seq::precedes`] says `a` comes before `b` when going forward from `a`
//! reaches `b` in fewer steps than going backward (libtorrent's `compare_less_wrap`); two numbers
//! exactly 2^15 apart precede neither each other. Nothing here is a total order, so `Seq` does
//! not implement `Ord`.

use core::fmt;

/// A wrapping 16-bit sequence number (`seq_nr` or `ack_nr`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u16);

impl Seq {
    /// The number `n` steps after this one, wrapping.
    pub const fn plus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// The number `n` steps before this one, wrapping.
    pub const fn minus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_sub(n))
    }

    /// The next number.
    pub const fn next(self) -> Seq {
        self.plus(1)
    }

    /// Steps forward from `earlier` to `self`, wrapping (`self - earlier` modulo 2^16).
    pub const fn since(self, earlier: Seq) -> u16 {
        self.0.wrapping_sub(earlier.0)
    }

    /// Whether `self` comes strictly before `other` across the wrap: `other` is fewer steps ahead
    /// of `self` than behind it.
    pub const fn precedes(self, other: Seq) -> bool {
        other.since(self) < self.since(other)
    }

    /// Whether `self` comes before `other` or is `other`.
    pub const fn precedes_or_eq(self, other: Seq) -> bool {
        self.0 == other.0 || self.precedes(other)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_at_the_edge() {
        // Proves 65535 comes before 0 and 1, and that the arithmetic wraps rather than panics.
        assert!(Seq(65535).precedes(Seq(0)));
        assert!(Seq(65535).precedes(Seq(1)));
        assert!(!Seq(0).precedes(Seq(65535)));
        assert_eq!(Seq(65535).next(), Seq(0));
        assert_eq!(Seq(0).minus(1), Seq(65535));
        assert_eq!(Seq(2).since(Seq(65534)), 4);
        // Half the space apart: neither precedes.
        assert!(!Seq(0).precedes(Seq(32768)));
        assert!(!Seq(32768).precedes(Seq(0)));
    }

    proptest! {
        #[test]
        fn forward_steps_precede(a in any::<u16>(), n in 1u16..32768) {
            // Proves any number less than half the space ahead is after, wherever the wrap falls.
            let (a, b) = (Seq(a), Seq(a).plus(n));
            prop_assert!(a.precedes(b));
            prop_assert!(!b.precedes(a));
            prop_assert!(a.precedes_or_eq(b));
            prop_assert_eq!(b.since(a), n);
            prop_assert_eq!(b.minus(n), a);
        }

        #[test]
        fn precedes_is_irreflexive_and_antisymmetric(a in any::<u16>(), b in any::<u16>()) {
            // Proves no number precedes itself and no two numbers precede each other.
            prop_assert!(!Seq(a).precedes(Seq(a)));
            prop_assert!(!(Seq(a).precedes(Seq(b)) && Seq(b).precedes(Seq(a))));
        }

        #[test]
        fn agrees_with_integers_inside_a_half_window(base in any::<u16>(), x in 0u16..32767, y in 0u16..32767) {
            // Proves that within a window of less than half the space, starting anywhere (so
            // across the wrap), the order is the order of the unwrapped integers.
            let (a, b) = (Seq(base).plus(x), Seq(base).plus(y));
            prop_assert_eq!(a.precedes(b), x < y);
        }
    }
}
