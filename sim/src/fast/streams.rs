//! The fast engine's stream-equality observer for uTP: every client of a group on uTP records
//! digests of each uTP connection's streams ([`bt_protocol::client::UtpTap`]); the engine takes
//! them as connections end, as a peer crashes and at the end of the run, pairs the two ends of
//! each connection and checks that what each end delivered is what the other end wrote, chunk
//! by chunk ([`StreamDigest::compare`]). A mismatch fails `utp_streams_equal`.
//!
//! Pairing: an end is keyed by (initiator's peer, acceptor's peer, the SYN's connection id);
//! the first end taken waits for its partner. Bounds: the ends waiting are at most the uTP
//! connections open or ended unpaired (each client bounds its own taps); a partner never
//! taken (an end whose client dropped it past its bound) counts as unpaired at the end.

use std::collections::BTreeMap;

use bt_protocol::client::{StreamDigest, StreamMismatch, UtpTap};

use super::{HostId, World, host_of_ip};

/// The key of a connection: initiator's peer, acceptor's peer, connection id.
pub(super) type TapKey = (HostId, HostId, u16);

/// Ends waiting for their partner, by key and by whether they initiated.
#[derive(Default)]
pub(super) struct Waiting {
    ends: BTreeMap<(TapKey, bool), UtpTap>,
}

impl World<'_> {
    /// Takes peer `h`'s stream digests (with `live`, those of its open connections too) and
    /// compares each with its partner's once both are in.
    pub(super) fn take_taps(&mut self, h: HostId, live: bool) {
        let Some(client) = self.hosts[h as usize].client.as_mut() else {
            return;
        };
        let taps = client.take_utp_taps(live);
        let hosts = self.hosts.len();
        for tap in taps {
            let Some(other) = host_of_ip(tap.remote.ip()).filter(|o| (*o as usize) < hosts) else {
                continue;
            };
            let key = if tap.initiator {
                (h, other, tap.conn_id)
            } else {
                (other, h, tap.conn_id)
            };
            match self.taps.ends.remove(&(key, !tap.initiator)) {
                Some(partner) => self.compare_ends(key, &tap, &partner),
                None => {
                    if let Some(old) = self.taps.ends.insert((key, tap.initiator), tap)
                        && old.sent.total() + old.delivered.total() > 0
                    {
                        self.transport.streams.unpaired += 1;
                    }
                }
            }
        }
    }

    /// Compares the two ends of connection `key`, both ways.
    fn compare_ends(&mut self, key: TapKey, a: &UtpTap, b: &UtpTap) {
        for (from, to) in [(a, b), (b, a)] {
            let (sender, receiver) = if from.initiator {
                (key.0, key.1)
            } else {
                (key.1, key.0)
            };
            let s = &mut self.transport.streams;
            s.compared += 1;
            match StreamDigest::compare(&from.sent, &to.delivered) {
                Ok(bytes) => s.bytes_compared += bytes,
                Err(m) => {
                    let what = match m {
                        StreamMismatch::Longer { sent, delivered } => {
                            format!("{delivered} bytes delivered of {sent} sent")
                        }
                        StreamMismatch::Chunk { offset } => {
                            format!("the chunk at byte {offset} differs")
                        }
                    };
                    s.mismatch(format!(
                        "peer {sender} to peer {receiver} (uTP connection id {}): {what}",
                        key.2
                    ));
                }
            }
        }
    }

    /// At the end of the run: every running client's digests, then the ends left without a
    /// partner (those that carried bytes) counted.
    pub(super) fn finish_taps(&mut self) {
        if !self.transport.streams.measured {
            return;
        }
        for h in 0..self.hosts.len() as HostId {
            self.take_taps(h, true);
        }
        let unpaired = self
            .taps
            .ends
            .values()
            .filter(|t| t.sent.total() + t.delivered.total() > 0)
            .count() as u64;
        self.transport.streams.unpaired += unpaired;
        self.taps.ends.clear();
    }
}
