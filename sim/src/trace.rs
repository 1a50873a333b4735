//! [`Fingerprint`]: a hash of a run's ordered event stream, so two runs can be compared by one
//! number; [`Trace`]: the fingerprint plus, on request (`btsim run --trace FILE`), the stream
//! itself as text, one line per record, so two runs can be compared line by line; [`Kind`]: every
//! kind of record either engine writes, with its code and the names of its words, in one table.
//!
//! Invariant: a code names one kind on both engines (the table is one enum, so the compiler
//! refuses a code given twice), and a kind's words mean the same on both.
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
    /// The hash of `text`'s bytes alone (to feed a name as one word).
    pub fn of_str(text: &str) -> u64 {
        let mut f = Fingerprint::default();
        for b in text.bytes() {
            f.0 ^= u64::from(b);
            f.0 = f.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        f.0
    }

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

/// Declares [`Kind`] from one list of `Variant = code, "name word_label ...", "what it is"`.
macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $spec:literal;)*) => {
        /// A kind of trace record: its code (the first word hashed) and its name and word labels
        /// (the text trace). Used by both engines.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Kind {
            $($(#[$doc])* $variant = $code,)*
        }

        impl Kind {
            /// Every kind, in code order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// Its name, then a label per word: `piece_verified host piece`.
            pub fn spec(self) -> &'static str {
                match self {
                    $(Kind::$variant => $spec,)*
                }
            }
        }
    };
}

kinds! {
    /// A peer joins (fast).
    Join = 1, "join host";
    /// A peer's timers are due (fast).
    Timer = 2, "timer host";
    /// A scheduled fault, by its index in the scenario.
    Fault = 3, "fault index";
    /// A peer's driver starts its `life`-th life (turmoil).
    Start = 4, "start host life";
    /// A peer leaves (fast).
    Leave = 5, "leave host";
    /// A peer crashes (fast).
    Crash = 6, "crash host";
    /// A peer restarts (fast).
    Restart = 7, "restart host";
    /// A driver's status snapshot (turmoil).
    Status = 8, "status host uploaded downloaded";
    /// A slow disk finished a read (fast).
    DiskRead = 10, "disk_read host conn";
    /// A peer's uplink finished sending a burst (fast).
    Sent = 11, "sent host conn bytes";
    /// A connection was reset (fast).
    Reset = 12, "reset conn";
    /// A burst is handed to its receiver (fast).
    Delivered = 13, "delivered host conn bytes";
    /// A connection attempt reaches the peer dialled (fast).
    SynReaches = 14, "syn_reaches host conn";
    /// A dial gave up unanswered (fast).
    ConnectTimeout = 15, "connect_timeout conn";
    /// A peer dials another (fast).
    Dial = 16, "dial host to_host";
    /// A driver's dial failed (turmoil).
    ConnectFailed = 17, "connect_failed host";
    /// A driver closed a connection, attached to the torrent or not (turmoil).
    ConnClosed = 18, "conn_closed host";
    /// A piece hashed right.
    PieceVerified = 20, "piece_verified host piece";
    /// A piece hashed wrong.
    PieceFailed = 21, "piece_failed host piece";
    /// A peer banned another (`banned_host` is `u64::MAX` when not a peer of the scenario).
    BanIssued = 22, "ban_issued host banned_host";
    /// A peer has every piece.
    Complete = 23, "complete host";
    /// The torrent took a connection.
    PeerConnected = 24, "peer_connected host conn";
    /// The torrent dropped a connection.
    PeerClosed = 25, "peer_closed host conn";
    /// A magnet peer's torrent has its metadata.
    MetadataReceived = 26, "metadata_received host";
    /// The driver reported the metadata it took (turmoil).
    DriverMetadata = 27, "driver_metadata host";
    /// Metadata that hashed right was refused (turmoil; the fast engine reports a violation).
    MetadataInvalid = 28, "metadata_invalid host";
    /// Peers the torrent passed on to be dialled (turmoil).
    PeersLearned = 29, "peers_learned host peers";
    /// New peers learned through PEX.
    PexLearned = 30, "pex_learned host new";
    /// A disk error (turmoil; the fast engine reports a violation).
    DiskError = 31, "disk_error host";
    /// A peer told its DHT port (turmoil).
    DhtPort = 32, "dht_port host";
    /// The torrent took a connection of a peer whose group sets `encryption`: `rc4` 1 when the
    /// stream runs under RC4, 0 in plaintext (turmoil: `conn` is 0, the driver's report has no
    /// handle).
    PeerCipher = 33, "peer_cipher host conn rc4";
    /// A peer announces to a tracker (fast).
    Announce = 40, "announce host tracker event";
    /// A request reaches a tracker that is up and is answered: an HTTP request, or a UDP
    /// datagram (connect or announce) (fast).
    TrackerRequest = 41, "tracker_request host tracker";
    /// A tracker's answer, or the timeout, reaches the peer (fast).
    TrackerAnswer = 42, "tracker_answer host ok";
    /// A tracker answered the driver (turmoil).
    TrackerAnswered = 43, "tracker_answered host peers";
    /// An announce failed (turmoil).
    TrackerFailed = 44, "tracker_failed host";
    /// An announce is slow to be answered (turmoil).
    TrackerSlow = 45, "tracker_slow host";
    /// A UDP tracker datagram is sent between a peer and a tracker (fast; `to_tracker` is 1 for
    /// the peer's, 0 for the tracker's answer; `hash` of its bytes, so a retransmission, which
    /// reuses the transaction id, repeats it).
    TrackerDatagram = 46, "tracker_datagram host tracker to_tracker bytes hash";
    /// A UDP tracker datagram is lost on the way, or reaches a tracker that is down (fast).
    TrackerLost = 47, "tracker_lost host tracker to_tracker";
    /// An attacker opened a connection.
    AttackOpen = 50, "attack_open host conn";
    /// An attacker's script ticks on a connection.
    AttackTick = 51, "attack_tick host conn";
    /// An honest peer closed a connection to an attacker, for `reason` (hash of its name).
    AttackClosed = 52, "attack_closed host reason";
    /// A DHT datagram is sent (fast; `to` is `u64::MAX` for no node of the scenario).
    DhtSent = 60, "dht_sent from to bytes hash";
    /// A DHT datagram reaches its node (fast).
    DhtDelivered = 61, "dht_delivered to bytes hash";
    /// Peers found through the DHT.
    DhtFound = 62, "dht_found host new";
    /// A bootstrap node's DHT timer (fast).
    DhtBootTimer = 63, "dht_boot_timer node";
    /// A DHT lookup finished (turmoil).
    DhtAnnounced = 64, "dht_announced host peers announced<<32|nodes";
    /// A peer's DHT node bootstrapped (turmoil).
    DhtBootstrapped = 65, "dht_bootstrapped host nodes";
    /// A peer's DHT node failed to start (turmoil).
    DhtFailed = 66, "dht_failed host";
    /// A peer's DHT node listens (turmoil).
    DhtListening = 67, "dht_listening host";
    /// A peer's DHT node stopped (turmoil).
    DhtStopped = 68, "dht_stopped host";
    /// A bootstrap node received a datagram (turmoil).
    DhtBootReceived = 69, "dht_boot_received node bytes";
    /// A peer's seeding goal was reached (`uploaded`: block bytes it uploaded in that life).
    SeedGoalReached = 70, "seed_goal_reached host uploaded";
    /// A peer's player starts reading at `offset` (torrent-wide bytes) (fast).
    ReaderStart = 80, "reader_start host offset";
    /// A peer's player is at `offset` and reading on (fast; every piece or second).
    ReaderAt = 81, "reader_at host offset";
    /// A peer's player reads its first byte, `waited_us` after its start (fast).
    ReaderFirstByte = 82, "reader_first_byte host waited_us";
    /// A peer's player stalls: the piece of its next byte is not verified (fast).
    ReaderStall = 83, "reader_stall host piece";
    /// A stalled player reads again, after `stalled_us` (fast).
    ReaderResume = 84, "reader_resume host stalled_us";
    /// A peer's player jumps to `offset` (fast).
    ReaderSeek = 85, "reader_seek host offset";
    /// A peer's player read the last byte of its file (fast).
    ReaderDone = 86, "reader_done host";
    /// A peer's driver paused its torrent, as a `pause` fault told it (turmoil).
    Paused = 90, "paused host";
    /// A peer's driver resumed its paused torrent, as a `resume` fault told it (turmoil).
    Resumed = 91, "resumed host";
    /// A uTP datagram is sent (fast): the sender and receiver (host numbers, `u64::MAX` for
    /// nobody), its length and a hash of its bytes.
    UtpSent = 100, "utp_sent from to bytes hash";
    /// A uTP datagram reaches its peer (fast).
    UtpDelivered = 101, "utp_delivered to bytes hash";
    /// A datagram is dropped at a peer's full uplink queue (fast; drop-tail).
    QueueDrop = 102, "queue_drop host bytes";
    /// A datagram leaves a peer's uplink after `delay_us` in its queue (fast).
    QueueLeft = 103, "queue_left host bytes delay_us";
}

impl Kind {
    /// The code hashed as the record's first word.
    pub fn code(self) -> u64 {
        self as u64
    }

    /// Its name: `piece_verified`.
    pub fn name(self) -> &'static str {
        self.spec().split(' ').next().unwrap_or_default()
    }

    /// The kind with `code`, if any.
    pub fn from_code(code: u64) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.code() == code)
    }
}

/// A run's event stream: always hashed into a [`Fingerprint`]; written out as text when a sink
/// was given. Engines call [`Trace::at`] when an event's time is known and [`Trace::record`] for
/// each record (its [`Kind`], then handles and sizes).
#[derive(Default)]
pub struct Trace {
    fingerprint: Fingerprint,
    sink: Option<Sink>,
}

struct Sink {
    out: std::io::BufWriter<Box<dyn std::io::Write + Send>>,
    now_micros: u64,
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("fingerprint", &self.fingerprint)
            .field("writing", &self.sink.is_some())
            .finish()
    }
}

impl Trace {
    /// A trace that writes to `out` and hashes.
    pub fn with_sink(out: Box<dyn std::io::Write + Send>) -> Self {
        Trace {
            fingerprint: Fingerprint::default(),
            sink: Some(Sink {
                out: std::io::BufWriter::with_capacity(1 << 16, out),
                now_micros: 0,
                error: None,
            }),
        }
    }

    /// The next records happen at `micros` of simulated time.
    #[inline]
    pub fn at(&mut self, micros: u64) {
        self.fingerprint.word(micros);
        if let Some(s) = self.sink.as_mut() {
            s.now_micros = micros;
        }
    }

    /// One record: hashed as `kind`'s code, then `ws`; written as `kind`'s name, then each word
    /// with its label.
    #[inline]
    pub fn record(&mut self, kind: Kind, ws: &[u64]) {
        self.fingerprint.word(kind.code());
        self.fingerprint.words(ws);
        if let Some(s) = self.sink.as_mut() {
            s.write(kind, ws);
        }
    }

    /// The fingerprint so far.
    pub fn value(&self) -> u64 {
        self.fingerprint.value()
    }

    /// Flushes the sink; the first write error, if any, naming what failed.
    pub fn finish(&mut self) -> std::io::Result<()> {
        match self.sink.as_mut() {
            None => Ok(()),
            Some(s) => match s.error.take() {
                Some(e) => Err(e),
                None => std::io::Write::flush(&mut s.out),
            },
        }
    }
}

impl Sink {
    fn write(&mut self, kind: Kind, ws: &[u64]) {
        use std::io::Write;
        if self.error.is_some() {
            return;
        }
        let t = self.now_micros;
        let mut result = write!(self.out, "{}.{:06} ", t / 1_000_000, t % 1_000_000);
        // The spec is the record's name, then a label per word: `piece_verified host piece`.
        let mut labels = kind.spec().split(' ');
        let name = labels.next().unwrap_or_default();
        result = result.and_then(|()| write!(self.out, "{name}"));
        for w in ws {
            result = result.and_then(|()| match labels.next() {
                Some(label) => write!(self.out, " {label}={w}"),
                // Past the labels: padding (engines pad records to a fixed width).
                None if *w == 0 => Ok(()),
                None => write!(self.out, " {w}"),
            });
        }
        if let Err(e) = result.and_then(|()| writeln!(self.out)) {
            self.error = Some(e);
        }
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

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_trace_writes_one_line_per_record_and_hashes_as_the_fingerprint() {
        // Proves the text trace names records from the kind table, labels their words, prints
        // unlabelled words bare and zero padding not at all, prints time in seconds to the
        // microsecond, and that writing it does not change the fingerprint.
        let out = Shared::default();
        let mut t = Trace::with_sink(Box::new(out.clone()));
        let mut plain = Trace::default();
        for tr in [&mut t, &mut plain] {
            tr.at(1_500_000);
            tr.record(Kind::Join, &[7, 8]);
            tr.record(Kind::Complete, &[2, 0]);
        }
        t.finish().unwrap();
        assert_eq!(t.value(), plain.value());
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "1.500000 join host=7 8\n1.500000 complete host=2\n");
    }

    #[test]
    fn every_kind_has_one_code_and_a_distinct_name() {
        // Proves the table is one-to-one: each code finds its own kind back, and no two kinds
        // share a name (so a trace line names exactly one kind), every name in snake case.
        let mut names = std::collections::BTreeSet::new();
        for &k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()), Some(k));
            assert!(names.insert(k.name()), "{} twice", k.name());
            assert!(
                k.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                k.name()
            );
        }
        assert_eq!(Kind::from_code(0), None);
    }
}
