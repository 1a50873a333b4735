//! [`ReceiveBuffer`]: the receiving half of a uTP connection: bytes delivered in order and not
//! yet read, and packets that arrived ahead of a gap.
//!
//! Invariants:
//! - `ack_nr` is the last sequence number received in order; the reorder buffer's slot `i` holds
//!   packet `ack_nr + 2 + i` (the same numbering as the selective ACK's bits), so its first
//!   missing packet is always `ack_nr + 1`;
//! - at most [`MAX_REORDER_PACKETS`] slots: a packet further ahead is dropped;
//! - readable bytes plus buffered out-of-order payload never exceed [`RECV_BUFFER_BYTES`]; a
//!   packet that would overflow it is dropped unacknowledged (the sender resends it), and the
//!   free space is what `wnd_size` advertises;
//! - nothing after the FIN's sequence number is accepted, and a second FIN with another number
//!   is ignored; the stream ends when `ack_nr` reaches the FIN.

use std::collections::VecDeque;

use crate::utp::seq::Seq;

/// The most packets held ahead of a gap (slots `ack_nr + 2 ..= ack_nr + 1 + this`).
pub const MAX_REORDER_PACKETS: usize = 512;

/// The most bytes held for the reader: delivered but unread plus buffered out of order.
pub const RECV_BUFFER_BYTES: usize = 1 << 20;

/// The longest selective ACK we send, in bytes: covers the whole reorder buffer.
pub const MAX_SACK_BYTES: usize = MAX_REORDER_PACKETS / 8;

/// What became of an arriving packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// The next in order: it and any buffered successors were delivered (this many bytes).
    InOrder(usize),
    /// Ahead of a gap, now buffered.
    Buffered,
    /// Already received (at or before `ack_nr`, or already buffered).
    Duplicate,
    /// Dropped: beyond the reorder bound, past the FIN, or no room in the buffer.
    Dropped,
}

/// The receiving half: see the module docs.
#[derive(Debug)]
pub(crate) struct ReceiveBuffer {
    ack_nr: Seq,
    reorder: VecDeque<Option<Vec<u8>>>,
    reorder_bytes: usize,
    readable: VecDeque<u8>,
    fin: Option<Seq>,
}

impl ReceiveBuffer {
    /// A buffer whose last in-order packet is `ack_nr`.
    pub(crate) fn new(ack_nr: Seq) -> Self {
        ReceiveBuffer {
            ack_nr,
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            readable: VecDeque::new(),
            fin: None,
        }
    }

    /// The last sequence number received in order.
    pub(crate) fn ack_nr(&self) -> Seq {
        self.ack_nr
    }

    /// Bytes of room left: what `wnd_size` advertises.
    pub(crate) fn free_bytes(&self) -> usize {
        RECV_BUFFER_BYTES.saturating_sub(self.readable.len() + self.reorder_bytes)
    }

    /// Bytes delivered in order and not yet read.
    pub(crate) fn readable_len(&self) -> usize {
        self.readable.len()
    }

    /// Whether the stream has ended: the FIN arrived and everything before it was delivered.
    pub(crate) fn at_eof(&self) -> bool {
        self.fin == Some(self.ack_nr)
    }

    /// Takes packet `seq` (a FIN if `fin`) with `payload`.
    pub(crate) fn insert(&mut self, seq: Seq, payload: &[u8], fin: bool) -> Arrival {
        let ahead = usize::from(seq.since(self.ack_nr));
        if !self.ack_nr.precedes(seq) {
            return Arrival::Duplicate;
        }
        if self.fin.is_some_and(|f| f.precedes(seq)) || (fin && self.fin.is_some_and(|f| f != seq))
        {
            return Arrival::Dropped;
        }
        if ahead > MAX_REORDER_PACKETS + 1 || payload.len() > self.free_bytes() {
            return Arrival::Dropped;
        }
        if fin {
            self.fin = Some(seq);
        }
        if ahead == 1 {
            return Arrival::InOrder(self.deliver(payload));
        }
        let slot = ahead - 2;
        if self.reorder.len() <= slot {
            self.reorder.resize(slot + 1, None);
        }
        if self.reorder[slot].is_some() {
            return Arrival::Duplicate;
        }
        self.reorder_bytes += payload.len();
        self.reorder[slot] = Some(payload.to_vec());
        Arrival::Buffered
    }

    /// Delivers `payload` (packet `ack_nr + 1`) and every buffered packet that follows it.
    fn deliver(&mut self, payload: &[u8]) -> usize {
        self.readable.extend(payload);
        self.ack_nr = self.ack_nr.next();
        let mut delivered = payload.len();
        // Slot 0 now holds `ack_nr + 1`: deliver while it is there; popping the first empty slot
        // (the new gap) restores the numbering.
        while !self.at_eof() {
            let Some(Some(next)) = self.reorder.pop_front() else {
                break;
            };
            self.reorder_bytes -= next.len();
            delivered += next.len();
            self.readable.extend(&next);
            self.ack_nr = self.ack_nr.next();
        }
        if self.at_eof() {
            self.reorder.clear();
            self.reorder_bytes = 0;
        }
        delivered
    }

    /// Moves up to `out.len()` in-order bytes into `out`; returns how many.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.readable.len());
        let (front, back) = self.readable.as_slices();
        let from_front = n.min(front.len());
        out[..from_front].copy_from_slice(&front[..from_front]);
        out[from_front..n].copy_from_slice(&back[..n - from_front]);
        self.readable.drain(..n);
        n
    }

    /// The selective ACK to send, written into `out`: bit `i` set if packet `ack_nr + 2 + i` is
    /// buffered, padded to a multiple of 4 bytes and cut at `max_len` (a multiple of 4); `None`
    /// when nothing is buffered or `max_len` is under 4.
    pub(crate) fn sack<'o>(
        &self,
        out: &'o mut [u8; MAX_SACK_BYTES],
        max_len: usize,
    ) -> Option<&'o [u8]> {
        if self.reorder.is_empty() || max_len < 4 {
            return None;
        }
        let len = self
            .reorder
            .len()
            .div_ceil(32)
            .saturating_mul(4)
            .min(max_len / 4 * 4)
            .min(MAX_SACK_BYTES);
        out[..len].fill(0);
        for (i, slot) in self.reorder.iter().enumerate().take(len * 8) {
            if slot.is_some() {
                out[i / 8] |= 1 << (i % 8);
            }
        }
        Some(&out[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::utp::packet::sack_bit;
    use proptest::prelude::*;

    fn drain(buf: &mut ReceiveBuffer) -> Vec<u8> {
        let mut out = vec![0; buf.readable_len()];
        assert_eq!(buf.read(&mut out), out.len());
        out
    }

    #[test]
    fn gap_then_fill_delivers_in_order() {
        // Proves a packet after a gap waits, shows in the SACK, and is delivered when the gap fills.
        let mut b = ReceiveBuffer::new(Seq(65534));
        assert_eq!(b.insert(Seq(0), b"cc", false), Arrival::Buffered);
        let mut scratch = [0; MAX_SACK_BYTES];
        let sack = b.sack(&mut scratch, MAX_SACK_BYTES).unwrap();
        assert_eq!(sack.len(), 4);
        assert!(sack_bit(sack, 0));
        assert_eq!(b.insert(Seq(0), b"cc", false), Arrival::Duplicate);
        assert_eq!(b.insert(Seq(65535), b"bb", false), Arrival::InOrder(4));
        assert_eq!(b.ack_nr(), Seq(0));
        assert_eq!(drain(&mut b), b"bbcc");
        assert_eq!(b.insert(Seq(65535), b"bb", false), Arrival::Duplicate);
        assert!(b.sack(&mut scratch, MAX_SACK_BYTES).is_none());
    }

    #[test]
    fn fin_ends_the_stream_after_its_data() {
        // Proves an early FIN waits for the data before it, and nothing after it is taken.
        let mut b = ReceiveBuffer::new(Seq(10));
        assert_eq!(b.insert(Seq(13), b"", true), Arrival::Buffered);
        assert_eq!(b.insert(Seq(14), b"late", false), Arrival::Dropped);
        assert_eq!(b.insert(Seq(15), b"", true), Arrival::Dropped);
        assert_eq!(b.insert(Seq(11), b"a", false), Arrival::InOrder(1));
        assert!(!b.at_eof());
        assert_eq!(b.insert(Seq(12), b"b", false), Arrival::InOrder(1));
        assert!(b.at_eof());
        assert_eq!(drain(&mut b), b"ab");
    }

    #[test]
    fn bounds_hold() {
        // Proves packets beyond the reorder bound or the byte bound are dropped, and reading frees room.
        let mut b = ReceiveBuffer::new(Seq(0));
        let far = Seq(0).plus(MAX_REORDER_PACKETS as u16 + 2);
        assert_eq!(b.insert(far, b"x", false), Arrival::Dropped);
        assert_eq!(b.insert(far.minus(1), b"x", false), Arrival::Buffered);
        let big = vec![7; RECV_BUFFER_BYTES];
        assert_eq!(b.insert(Seq(1), &big, false), Arrival::Dropped);
        assert_eq!(
            b.insert(Seq(1), &big[2..], false),
            Arrival::InOrder(RECV_BUFFER_BYTES - 2)
        );
        assert_eq!(b.free_bytes(), 1);
        assert_eq!(b.insert(Seq(2), b"yy", false), Arrival::Dropped);
        let mut out = vec![0; 100];
        assert_eq!(b.read(&mut out), 100);
        assert_eq!(b.free_bytes(), 101);
    }

    proptest! {
        #[test]
        fn any_arrival_order_delivers_the_stream(
            seed in any::<u64>(),
            start in any::<u16>(),
            count in 1usize..200,
            dup_every in 2usize..10,
        ) {
            // Proves any order of arrival, with duplicates and across the wrap, delivers exactly
            // the sent bytes in order, and the stream ends at the FIN.
            let mut rng = Rng::new(seed);
            let packets: Vec<Vec<u8>> = (0..count)
                .map(|i| vec![i as u8; (rng.below(50) + 1) as usize])
                .collect();
            let mut order: Vec<usize> = (0..=count).collect(); // index `count` is the FIN
            rng.shuffle(&mut order);
            let dups: Vec<usize> = order.iter().copied().step_by(dup_every).collect();
            order.extend(dups);
            let mut b = ReceiveBuffer::new(Seq(start));
            let mut got = Vec::new();
            for i in order {
                let seq = Seq(start).plus(i as u16 + 1);
                let payload = packets.get(i).map_or(&[][..], |p| &p[..]);
                b.insert(seq, payload, i == count);
                got.extend(drain(&mut b));
            }
            prop_assert_eq!(got, packets.concat());
            prop_assert!(b.at_eof());
            prop_assert_eq!(b.free_bytes(), RECV_BUFFER_BYTES);
        }
    }
}
