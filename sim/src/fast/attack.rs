//! The fast engine's attackers: [`crate::attack::Attacker`] scripts on the engine's TCP links.
//!
//! An attacker announces like any peer (as a seed, `left = 0`, so leechers want it), dials each
//! address it learns once, never dials another attacker, accepts up to its group's `max_peers`,
//! hands what arrives to its script (which keeps only an MSE peer's key) or discards it, and
//! never closes a connection itself: every end comes
//! from the honest side (a close with the protocol's reason, recorded by `close_local` in
//! `net.rs`) or from the run ending. Every script step is an event in the trace and the
//! fingerprint.
//!
//! Bounds: an attacker queues at most [`MAX_QUEUED`] bytes on one connection (a streaming
//! attack tops its queue up on its ticks, never past that); its scripts are one per open
//! connection (at most `max_peers`); the addresses it remembers having dialled are at most the
//! scenario's peers.

use bt_protocol::io::ConnId;
use bytes::Bytes;

use super::{Ev, HostId, World, net};
use crate::attack::{MAX_QUEUED, Step};
use crate::trace::Kind;

impl World<'_> {
    /// Attacker `h`'s end `conn` opened (`dialled`: by the attacker): start its script.
    pub(super) fn attack_open(&mut self, h: HostId, conn: ConnId, dialled: bool) {
        let content = std::sync::Arc::clone(&self.content);
        let Some(attacker) = self.hosts[h as usize].attacker.as_mut() else {
            return;
        };
        let step = attacker.opened(conn, dialled, content.info_hash, &content.layout);
        self.attack_conns_open += 1;
        let group = self.hosts[h as usize].group;
        if let Some(Some(a)) = self.attacks.get_mut(group) {
            a.connections += 1;
        }
        self.trace.record(Kind::AttackOpen, &[u64::from(h), conn.0]);
        self.attack_step(h, conn, step);
    }

    /// An attacker's script tick.
    pub(super) fn on_attack_tick(&mut self, h: HostId, epoch: u32, conn: ConnId) {
        if self.hosts[h as usize].epoch != epoch {
            return;
        }
        let queued = self.conns.get(&conn).map_or(0, net::Conn::queued);
        let content = std::sync::Arc::clone(&self.content);
        let Some(attacker) = self.hosts[h as usize].attacker.as_mut() else {
            return;
        };
        if attacker.runs(conn) {
            self.trace.record(Kind::AttackTick, &[u64::from(h), conn.0]);
        }
        let step = attacker.tick(conn, &content.layout, MAX_QUEUED.saturating_sub(queued));
        self.attack_step(h, conn, step);
    }

    /// Bytes reached attacker `h`'s end `conn`: its script reads them if it wants to.
    pub(super) fn attack_received(&mut self, h: HostId, conn: ConnId, bytes: &[u8]) {
        let info_hash = self.content.info_hash;
        let Some(attacker) = self.hosts[h as usize].attacker.as_mut() else {
            return;
        };
        let step = attacker.received(conn, bytes, info_hash);
        self.attack_step(h, conn, step);
    }

    fn attack_step(&mut self, h: HostId, conn: ConnId, step: Step) {
        if !step.bytes.is_empty() {
            let group = self.hosts[h as usize].group;
            if let Some(Some(a)) = self.attacks.get_mut(group) {
                a.bytes_sent += step.bytes.len() as u64;
            }
            self.enqueue(h, conn, net::Item::Data(Bytes::from(step.bytes)));
        }
        if let Some(after) = step.again {
            let (now, epoch) = (self.now(), self.hosts[h as usize].epoch);
            self.queue.push(
                now + after,
                Ev::AttackTick {
                    host: h,
                    epoch,
                    conn,
                },
            );
        }
    }

    /// Attacker `h`'s end `conn` is gone (closed by the other side, reset, or dropped).
    pub(super) fn attack_end_gone(&mut self, h: HostId, conn: ConnId) {
        if let Some(a) = self.hosts[h as usize].attacker.as_mut()
            && a.forget(conn)
        {
            self.attack_conns_open -= 1;
        }
    }
}
