//! [`Announcer`]: when, and to which tracker, one torrent announces (BEP 12 tiers, BEP 3 events).
//!
//! Invariants (the rules are stated in full on [`Announcer`]): at most one announce in flight;
//! a timer only when an announce can be made; at most [`MAX_TRACKERS`] URLs and one error each.

use std::time::Duration;

use super::announce::{AnnounceResponse, Event, TrackerError};
use super::url::TrackerUrl;
use crate::rng::Rng;
use crate::time::Instant;

/// Most distinct tracker URLs one announcer keeps.
pub const MAX_TRACKERS: usize = 256;

/// Tunables of an [`Announcer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnouncerConfig {
    /// Wait after the first round in which every tracker failed.
    pub retry_min: Duration,
    /// Longest wait between failed rounds.
    pub retry_max: Duration,
    /// Shortest regular re-announce interval, whatever a tracker asks (guards against a tracker
    /// that says `interval` 1).
    pub interval_floor: Duration,
}

impl Default for AnnouncerConfig {
    /// 30 s doubling to 30 min after failures; re-announce at most once a minute.
    fn default() -> Self {
        AnnouncerConfig {
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            interval_floor: Duration::from_secs(60),
        }
    }
}

/// An announce the driver should make now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The URL as given; pass it back to [`Announcer::handle_success`] or
    /// [`Announcer::handle_failure`].
    pub url: String,
    /// The same URL, parsed.
    pub tracker: TrackerUrl,
    /// The event to send.
    pub event: Event,
    /// The `tracker id` this URL gave in its last answer that had one, to send back
    /// ([`super::AnnounceRequest::tracker_id`]).
    pub tracker_id: Option<String>,
}

#[derive(Clone, Debug)]
struct Entry {
    url: String,
    tracker: TrackerUrl,
    last_error: Option<TrackerError>,
    tracker_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before [`Announcer::started`].
    Idle,
    Running,
    /// `stopped` is queued for the last working URL.
    Stopping,
    Stopped,
}

/// The trackers of one torrent and when to announce to which.
///
/// It performs nothing itself: [`Announcer::poll_announce`] says "announce this event to this URL
/// now", the driver does it with the HTTP or UDP client of this module, and reports back with
/// [`Announcer::handle_success`] or [`Announcer::handle_failure`]. One announce is in flight at a
/// time; the announcer waits for its report however long it takes, so the driver must always
/// report (the UDP client ends with [`TrackerError::Timeout`]; the driver bounds HTTP itself).
///
/// Methods, in the quinn-proto order:
/// - getters: [`Announcer::tiers`], [`Announcer::errors`], [`Announcer::last_working`],
///   [`Announcer::in_flight`], [`Announcer::is_stopped`], [`Announcer::poll_timeout`];
/// - input: [`Announcer::handle_success`], [`Announcer::handle_failure`];
/// - commands: [`Announcer::started`], [`Announcer::completed`], [`Announcer::stopped`];
/// - output: [`Announcer::poll_announce`], called after every input and command and at
///   [`Announcer::poll_timeout`].
///
/// The rules:
/// - BEP 12: each tier is shuffled once, at construction. A round of announcing tries the first
///   URL of the first tier, then the next URL of that tier, then the next tier; a URL that
///   answers moves to the front of its tier. Every round starts again at the first tier.
/// - Nothing is announced before [`Announcer::started`]. The event queued by a command
///   (`started`, `completed`, `stopped`) rides on the next announce and stays queued until an
///   announce carrying it succeeds (a failed `started` is retried as `started`), except
///   `stopped` (below).
/// - After a success the next regular announce comes after the tracker's `interval`, but never
///   sooner than its `min interval` nor than [`AnnouncerConfig::interval_floor`]. A `completed`
///   queued meanwhile also waits for the `min interval`; `stopped` does not.
/// - When every URL of a round failed, the next round waits [`AnnouncerConfig::retry_min`],
///   doubling after each failed round up to [`AnnouncerConfig::retry_max`] (30 s, 1 min, 2 min,
///   ... 16 min, then 30 min by default); a success resets it.
/// - `stopped` is announced once, to the last URL that answered, and not retried; with no such
///   URL there is nobody to tell and the announcer stops at once (after an announce in flight is
///   reported: if that one succeeds, its URL gets the `stopped`).
///
/// Bounds: at most [`MAX_TRACKERS`] distinct URLs are kept (later ones are ignored); one error is
/// kept per URL. URLs that do not parse never get announced to; their error is listed by
/// [`Announcer::errors`].
#[derive(Clone, Debug)]
pub struct Announcer {
    config: AnnouncerConfig,
    tiers: Vec<Vec<Entry>>,
    rejected: Vec<(String, TrackerError)>,
    phase: Phase,
    /// Tier and index of the URL to try next in this round.
    cursor: (usize, usize),
    /// The event waiting for a successful announce.
    pending: Event,
    next: Option<Instant>,
    /// A queued `completed` waits until this (the last tracker's `min interval`).
    earliest: Option<Instant>,
    in_flight: Option<(String, Event)>,
    last_working: Option<String>,
    failed_rounds: u32,
}

impl Announcer {
    /// An announcer for `tiers` (BEP 12 `announce-list`, or `[[announce]]`): duplicate URLs and
    /// empty tiers dropped, each tier shuffled with `rng`, each URL parsed (failures are kept
    /// for [`Announcer::errors`]). Idle until [`Announcer::started`].
    pub fn new(config: AnnouncerConfig, tiers: Vec<Vec<String>>, rng: &mut Rng) -> Self {
        let mut seen = std::collections::BTreeSet::new();
        let mut kept = Vec::new();
        let mut rejected = Vec::new();
        for mut tier in tiers {
            rng.shuffle(&mut tier);
            let mut entries = Vec::new();
            for url in tier {
                if seen.len() >= MAX_TRACKERS || !seen.insert(url.clone()) {
                    continue;
                }
                match TrackerUrl::parse(&url) {
                    Ok(tracker) => entries.push(Entry {
                        url,
                        tracker,
                        last_error: None,
                        tracker_id: None,
                    }),
                    Err(e) => rejected.push((url, TrackerError::Url(e))),
                }
            }
            if !entries.is_empty() {
                kept.push(entries);
            }
        }
        Announcer {
            config,
            tiers: kept,
            rejected,
            phase: Phase::Idle,
            cursor: (0, 0),
            pending: Event::None,
            next: None,
            earliest: None,
            in_flight: None,
            last_working: None,
            failed_rounds: 0,
        }
    }

    // ---- getters ----

    /// The usable URLs, tier by tier, in the order they will be tried.
    pub fn tiers(&self) -> Vec<Vec<&str>> {
        self.tiers
            .iter()
            .map(|tier| tier.iter().map(|e| e.url.as_str()).collect())
            .collect()
    }

    /// The last error of each URL that has one (cleared by a success): URLs in tier order, then
    /// the URLs that could not be parsed.
    pub fn errors(&self) -> impl Iterator<Item = (&str, &TrackerError)> {
        self.tiers
            .iter()
            .flatten()
            .filter_map(|e| Some((e.url.as_str(), e.last_error.as_ref()?)))
            .chain(self.rejected.iter().map(|(url, e)| (url.as_str(), e)))
    }

    /// The URL that answered last.
    pub fn last_working(&self) -> Option<&str> {
        self.last_working.as_deref()
    }

    /// The announce the driver is making (URL and event), if any.
    pub fn in_flight(&self) -> Option<(&str, Event)> {
        self.in_flight.as_ref().map(|(url, e)| (url.as_str(), *e))
    }

    /// Whether the announcer is done: `stopped` was announced (or there was nobody to tell).
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// When [`Announcer::poll_announce`] will next have something; `None` while an announce is
    /// in flight, before `started`, after `stopped`, or with no usable URL.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running | Phase::Stopping
                if self.in_flight.is_none() && !self.tiers.is_empty() =>
            {
                self.next
            }
            _ => None,
        }
    }

    // ---- input ----

    /// The announce to `url` succeeded. Reports for a URL not in flight are ignored.
    pub fn handle_success(&mut self, now: Instant, url: &str, response: &AnnounceResponse) {
        let Some(event) = self.take_in_flight(url) else {
            return;
        };
        if event == Event::Stopped {
            return self.stop_if_stopping();
        }
        let (tier, index) = self
            .position(url)
            .expect("an announce in flight is for a URL of a tier");
        let entry = self.tiers[tier].remove(index);
        self.tiers[tier].insert(0, entry);
        self.tiers[tier][0].last_error = None;
        if let Some(id) = &response.tracker_id {
            self.tiers[tier][0].tracker_id = Some(id.clone());
        }
        self.last_working = Some(url.to_owned());
        self.failed_rounds = 0;
        self.cursor = (0, 0);
        if self.phase == Phase::Stopping {
            // A `completed` sent on the way out is sent once; `stopped` follows at once.
            self.pending = Event::Stopped;
            self.next = Some(now);
            return;
        }
        if self.pending == event {
            self.pending = Event::None;
        }
        let min_interval = response.min_interval.unwrap_or_default();
        self.earliest = Some(now + min_interval);
        self.next = Some(if self.pending == Event::None {
            now + response
                .interval
                .max(min_interval)
                .max(self.config.interval_floor)
        } else {
            now + min_interval
        });
    }

    /// The announce to `url` failed: try the next URL of the round, or wait and start a new
    /// round. Reports for a URL not in flight are ignored.
    pub fn handle_failure(&mut self, now: Instant, url: &str, error: &TrackerError) {
        let Some(event) = self.take_in_flight(url) else {
            return;
        };
        if let Some((tier, index)) = self.position(url) {
            self.tiers[tier][index].last_error = Some(error.clone());
        }
        if event == Event::Stopped {
            return self.stop_if_stopping();
        }
        if self.phase == Phase::Stopping {
            // A regular announce failed while `stopped` waited for it (or the `completed` sent
            // on the way out failed: not retried).
            self.pending = Event::Stopped;
            if self.last_working.is_some() {
                self.next = Some(now);
            } else {
                self.stop();
            }
            return;
        }
        let (tier, index) = self.position(url).unwrap_or(self.cursor);
        self.cursor = if index + 1 < self.tiers[tier].len() {
            (tier, index + 1)
        } else {
            (tier + 1, 0)
        };
        if self.cursor.0 < self.tiers.len() {
            self.next = Some(now);
            return;
        }
        self.cursor = (0, 0);
        self.failed_rounds = self.failed_rounds.saturating_add(1);
        let factor = 1u32.checked_shl(self.failed_rounds - 1).unwrap_or(u32::MAX);
        let wait = self
            .config
            .retry_min
            .saturating_mul(factor)
            .min(self.config.retry_max);
        self.next = Some(now + wait);
    }

    // ---- commands ----

    /// The torrent starts: announce `started` now, beginning at the first tier. Also restarts a
    /// stopped announcer.
    pub fn started(&mut self, now: Instant) {
        self.phase = Phase::Running;
        self.pending = Event::Started;
        self.cursor = (0, 0);
        self.failed_rounds = 0;
        self.next = Some(now);
    }

    /// The download completed: announce `completed` as soon as the tracker's `min interval`
    /// allows. Ignored unless running.
    pub fn completed(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.pending = Event::Completed;
        self.cursor = (0, 0);
        self.next = Some(now.max(self.earliest.unwrap_or(now)));
    }

    /// The torrent stops: announce `stopped` once to the last URL that answered, now (or when
    /// the announce in flight is reported). A `completed` not yet announced goes first, once, to
    /// the same URL, so a download that stops as it completes is still counted by the tracker.
    /// With nobody to tell, stops at once.
    pub fn stopped(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle | Phase::Stopped => self.stop(),
            Phase::Running | Phase::Stopping => {
                if self.last_working.is_none() && self.in_flight.is_none() {
                    return self.stop();
                }
                self.phase = Phase::Stopping;
                if self.pending != Event::Completed {
                    self.pending = Event::Stopped;
                }
                self.next = Some(now);
            }
        }
    }

    // ---- output ----

    /// The announce to make now, if one is due. The driver makes it and reports the outcome.
    pub fn poll_announce(&mut self, now: Instant) -> Option<Announce> {
        if self.in_flight.is_some() || self.next.is_none_or(|next| next > now) {
            return None;
        }
        let (position, event) = match self.phase {
            Phase::Idle | Phase::Stopped => return None,
            Phase::Stopping => {
                let position = self
                    .last_working
                    .as_deref()
                    .and_then(|url| self.position(url));
                let event = if self.pending == Event::Completed {
                    Event::Completed
                } else {
                    Event::Stopped
                };
                (position, event)
            }
            Phase::Running => {
                let (tier, index) = self.cursor;
                let exists = self.tiers.get(tier).is_some_and(|t| index < t.len());
                (exists.then_some(self.cursor), self.pending)
            }
        };
        let Some((tier, index)) = position else {
            // No usable URL (none parsed, or none ever answered for `stopped`): nothing to do,
            // and no timer that would wake the driver for nothing.
            if self.phase == Phase::Stopping {
                self.stop();
            } else {
                self.next = None;
            }
            return None;
        };
        let entry = &self.tiers[tier][index];
        let (url, tracker, tracker_id) = (
            entry.url.clone(),
            entry.tracker.clone(),
            entry.tracker_id.clone(),
        );
        self.in_flight = Some((url.clone(), event));
        Some(Announce {
            url,
            tracker,
            event,
            tracker_id,
        })
    }

    // ---- internals ----

    fn take_in_flight(&mut self, url: &str) -> Option<Event> {
        match &self.in_flight {
            Some((in_flight, event)) if in_flight == url => {
                let event = *event;
                self.in_flight = None;
                Some(event)
            }
            _ => None,
        }
    }

    fn position(&self, url: &str) -> Option<(usize, usize)> {
        self.tiers
            .iter()
            .enumerate()
            .find_map(|(t, tier)| tier.iter().position(|e| e.url == url).map(|i| (t, i)))
    }

    /// A `stopped` announce was reported: done, unless `started` came meanwhile.
    fn stop_if_stopping(&mut self) {
        if self.phase == Phase::Stopping {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.phase = Phase::Stopped;
        self.pending = Event::None;
        self.next = None;
        self.in_flight = None;
    }
}
