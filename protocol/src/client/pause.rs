//! Pausing and resuming a torrent, as qBittorrent does: a paused torrent is off the network but
//! keeps everything it knows.
//!
//! [`Client::pause`]: its connections close, connects in progress are given up, nothing is
//! requested, served or dialled, incoming connections naming it are refused, it leaves the DHT,
//! and trackers hear `stopped`. Its verified pieces, file priorities, peer list and statistics
//! stay. [`Client::resume`]: it announces `started`, rejoins the DHT, takes connections again and
//! dials every address of its peer list at once (waits for a retry end).
//!
//! Invariant: only a running torrent pauses and only a paused one resumes; a paused torrent can
//! still be stopped (and is, by [`Client::shutdown`]).

use super::{Client, Phase};
use crate::session::{SessionError, TorrentId};
use crate::time::Instant;

impl Client {
    /// Pauses torrent `id` (see the module docs). Pausing a torrent that is not running (paused,
    /// stopping, stopped) does nothing.
    pub fn pause(&mut self, now: Instant, id: TorrentId) -> Result<(), SessionError> {
        let side = self
            .sides
            .get_mut(&id)
            .ok_or(SessionError::NoSuchTorrent(id))?;
        if side.phase != Phase::Running {
            return Ok(());
        }
        side.phase = Phase::Paused;
        self.disconnect(now, id);
        self.collect(now);
        self.pump(now);
        Ok(())
    }

    /// Resumes paused torrent `id` (see the module docs). Resuming a torrent that is not paused
    /// does nothing.
    pub fn resume(&mut self, now: Instant, id: TorrentId) -> Result<(), SessionError> {
        let side = self
            .sides
            .get_mut(&id)
            .ok_or(SessionError::NoSuchTorrent(id))?;
        if side.phase != Phase::Paused {
            return Ok(());
        }
        side.phase = Phase::Running;
        if let Some(a) = &mut side.announcer {
            a.started(now);
        }
        side.peers.wake(now);
        if !side.private
            && let (Some(dht), Some(t)) = (&mut self.dht, self.session.torrent(id))
        {
            side.dht = true;
            dht.add_torrent(now, t.info_hash(), self.listen.map(|l| l.port()));
        }
        self.session.set_accepting(id, true);
        self.pump(now);
        Ok(())
    }

    /// Whether torrent `id` is paused.
    pub fn is_paused(&self, id: TorrentId) -> bool {
        self.sides
            .get(&id)
            .is_some_and(|s| s.phase == Phase::Paused)
    }
}
