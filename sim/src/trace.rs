//! [`Fingerprint`]: a hash of a run's ordered event stream, so two runs can be compared by one
//! number.
//!
//! FNV-1a over 64-bit words: every event the engine handles is fed as its time, its kind and the
//! handles and sizes it carries, in the order handled. Not cryptographic; it only has to change
//! when the run changes. The same scenario and seed must give the same fingerprint on every
//! machine and in every build, so nothing fed here may depend on addresses, hash-map order or
//! wall time.

/// A running FNV-1a hash of the event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// Feeds one word.
    #[inline]
    pub fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds several words.
    #[inline]
    pub fn words(&mut self, ws: &[u64]) {
        for w in ws {
            self.word(*w);
        }
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }

    /// The hash as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matters() {
        // Proves the fingerprint tells apart the same events in another order.
        let mut a = Fingerprint::default();
        a.words(&[1, 2]);
        let mut b = Fingerprint::default();
        b.words(&[2, 1]);
        assert_ne!(a, b);
        let mut c = Fingerprint::default();
        c.words(&[1, 2]);
        assert_eq!(a, c);
    }
}
