//! Scenario files: what a simulated swarm is made of, read from TOML.
//!
//! A scenario is data (as in FoundationDB's test files): the seed, the torrent's geometry, the
//! trackers, groups of peers, the network, faults on a schedule, and what must hold at the end.
//! `sim/README.md` documents every key; this module is the one place that reads them.
//!
//! Two stages, "parse, don't validate": serde reads the file into `Raw*` structs that mirror it
//! (every table refuses unknown keys), then [`Scenario::parse`] checks what serde cannot (names
//! that refer to groups, exactly one action per fault, bounds) and builds the [`Scenario`] the
//! engines run, with sizes in bytes, times as [`Duration`]s and groups by index.
//!
//! Every error names the file, the line and the key ([`ScenarioError`]): toml's errors carry the
//! byte span of the offending key or value, and checks after serde keep the spans they need
//! ([`toml::Spanned`]).
//!
//! Bounds (a scenario is input, so everything it can grow is capped): at most [`MAX_HOSTS`]
//! peers, [`MAX_GROUPS`] groups, [`MAX_TRACKERS`] trackers, [`MAX_FAULTS`] faults, a torrent of
//! at most [`MAX_TORRENT_BYTES`] (its content is held in memory once), a simulated duration of at
//! most [`MAX_DURATION`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use bt_protocol::client::{SeedGoal, SeedRatio, Transport};
use bt_protocol::content::ContentSpec;
use bt_protocol::metainfo::TorrentLayout;
use bt_protocol::session::Encryption;
use bt_protocol::torrent::{FilePriority, Strategy, TorrentConfig};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use toml::Spanned;

mod reader;

pub use reader::{MAX_SEEKS, ReaderSpec};

/// Most peers in one scenario.
pub const MAX_HOSTS: u32 = 100_000;
/// Most `[[group]]` tables.
pub const MAX_GROUPS: usize = 64;
/// Most `[[tracker]]` tables.
pub const MAX_TRACKERS: usize = 16;
/// Most `[[fault]]` tables.
pub const MAX_FAULTS: usize = 10_000;
/// Largest torrent: the fast engine generates its content once and keeps it in memory.
pub const MAX_TORRENT_BYTES: u64 = 4 << 30;
/// Longest simulated run: 30 days.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most files in the torrent.
pub const MAX_FILES: usize = 10_000;

/// Which engine runs a scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Protocol sessions driven directly by an event-driven clock (`sim/src/fast/`).
    #[default]
    Fast,
    /// The real runtime driver on turmoil's simulated network (`sim/src/turmoil/`).
    Turmoil,
}

impl EngineKind {
    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Fast => "fast",
            EngineKind::Turmoil => "turmoil",
        }
    }

    /// Parses `fast` or `turmoil`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fast" => Some(EngineKind::Fast),
            "turmoil" => Some(EngineKind::Turmoil),
            _ => None,
        }
    }
}

/// A validated scenario, ready to run. See the module docs and `sim/README.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The engine the file asks for (the command line may override it).
    pub engine: EngineKind,
    /// The seed the file gives (the command line may override it).
    pub seed: u64,
    /// The run stops at this simulated time at the latest.
    pub duration: Duration,
    /// The torrent's geometry.
    pub torrent: TorrentSpec,
    /// The trackers, each its own tier (BEP 12).
    pub trackers: Vec<TrackerSpec>,
    /// The network between every two peers.
    pub link: LinkSpec,
    /// The mainline DHT (BEP 5), when the file has a `[dht]` table.
    pub dht: Option<DhtSpec>,
    /// The peers, group by group.
    pub groups: Vec<GroupSpec>,
    /// Faults, sorted by time (stable: faults at the same time keep file order).
    pub faults: Vec<FaultSpec>,
    /// What must hold for the run to pass.
    pub expect: Expect,
    /// Windows of the run whose uplink traffic is reported on its own (`[[phase]]`).
    pub phases: Vec<PhaseSpec>,
}

/// A window of the run whose uplink traffic and queueing delay are reported on their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseSpec {
    /// Its name in reports and expectations.
    pub name: String,
    /// From this simulated time.
    pub from: Duration,
    /// Up to this simulated time.
    pub to: Duration,
}

/// Most `[[phase]]` tables.
pub const MAX_PHASES: usize = 16;

/// `uplink_share_at_least`: a class's least share of a group's uplink bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct ShareExpect {
    /// The group (by index) whose uplinks are judged.
    pub group: usize,
    /// The traffic class.
    pub transport: crate::transport::Class,
    /// The least share, 0 to 1.
    pub share: f64,
    /// The phase (by name); `None` is the whole run.
    pub phase: Option<String>,
}

/// `queue_delay_at_most`: the 95th percentile of the queueing delay at a group's uplinks.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayExpect {
    /// The group (by index) whose uplinks are judged.
    pub group: usize,
    /// The class judged; `None` is every item.
    pub transport: Option<crate::transport::Class>,
    /// The bound on the 95th percentile, milliseconds.
    pub p95_ms: u64,
    /// The phase (by name); `None` is the whole run.
    pub phase: Option<String>,
}

/// The torrent's geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentSpec {
    /// Bytes per piece.
    pub piece_length: u64,
    /// Each file's length in bytes.
    pub files: Vec<u64>,
}

impl TorrentSpec {
    /// The torrent's total size in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().sum()
    }

    /// The validated layout.
    pub fn layout(&self) -> TorrentLayout {
        TorrentLayout::new(self.piece_length, &self.files).expect("checked by Scenario::parse")
    }

    /// The generated torrent's spec ([`bt_protocol::content`]): named `btsim`, this geometry.
    /// Both engines build their torrent from it, so a scenario and seed are one torrent (one
    /// info hash) on either. Fails when the piece length does not fit a torrent.
    pub fn content_spec(&self) -> Result<ContentSpec, String> {
        Ok(ContentSpec {
            name: "btsim".to_owned(),
            piece_length: u32::try_from(self.piece_length)
                .map_err(|_| "the piece length does not fit a torrent".to_owned())?,
            files: self.files.clone(),
        })
    }
}

/// How peers reach a tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// HTTP announces over TCP (BEP 3).
    Http,
    /// UDP announces (BEP 15).
    Udp,
}

/// One tracker.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackerSpec {
    /// HTTP or UDP.
    pub kind: TrackerKind,
    /// The `interval` it gives in every answer.
    pub interval: Duration,
    /// The most peers it gives in one answer.
    pub max_peers: usize,
    /// Fraction of packets to and from it lost, besides the link's `loss`.
    pub loss: f64,
}

/// The network between every two peers.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    /// One-way delay.
    pub latency: Duration,
    /// Each transmission is delayed by a further uniform `0..=jitter` (streams stay in order).
    pub jitter: Duration,
    /// Fraction of transmissions lost (TCP streams retransmit them; a UDP announce is retried).
    pub loss: f64,
    /// The bound in bytes of each peer's uplink queue (the fast engine's bottleneck model: a
    /// drop-tail FIFO shared by TCP bursts and datagrams). `None`: the file did not set it.
    pub buffer: Option<u64>,
}

/// The DHT of a scenario (`[dht]`): its bootstrap nodes and the loss of its datagrams.
#[derive(Clone, Debug, PartialEq)]
pub struct DhtSpec {
    /// Hosts that are DHT nodes only (no torrent), the nodes every peer starts from.
    pub bootstrap: u32,
    /// Fraction of DHT datagrams lost, on top of the link's `loss` (no retransmission: a lost
    /// query times out in the DHT node).
    pub loss: f64,
}

/// Most bootstrap nodes in `[dht]`.
pub const MAX_DHT_BOOTSTRAP: u32 = 16;

/// A peer's role at the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Starts with every piece.
    Seeder,
    /// Starts with none.
    Leecher,
    /// A scripted hostile peer (fast engine only): not a protocol session but raw bytes on the
    /// wire, as its group's [`Attack`] says.
    Attacker,
}

/// What a scripted hostile peer does on every connection it opens or accepts (`attack` in a
/// `[[group]]` of role `attacker`; `sim/README.md` describes each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// A handshake for another torrent.
    WrongInfoHash,
    /// A bitfield one byte short, or with the spare bits past the last piece set.
    BadBitfield,
    /// A `have` for a piece past the end of the torrent.
    HaveOutOfRange,
    /// A request past the end of a piece, or for more than 16 KiB.
    BadRequest,
    /// Requests for every block, over and over, without the Fast extension.
    RequestFlood,
    /// The same flood from a peer that claims the Fast extension (so it can be sent rejects).
    RequestFloodFast,
    /// `piece` messages for blocks nobody asked for, at the attacker's uplink rate.
    UnrequestedPiece,
    /// A length prefix of 4 GiB - 1 after the handshake.
    HugeLengthPrefix,
    /// After a prompt handshake, one byte a second of a message that never ends.
    Slowloris,
    /// The handshake itself at one byte a second.
    SlowlorisHandshake,
    /// Claims every piece, then choke and unchoke in turn, many times a second.
    ChokeStorm,
    /// Opens the connection and never sends a byte.
    Silent,
    /// Offers the metadata (BEP 10 handshake with `ut_metadata` and the true `metadata_size`)
    /// and sends `ut_metadata` pieces of the right length and the wrong bytes (BEP 9).
    BadMetadata,
    /// An MSE handshake: a sound Diffie-Hellman key, then random bytes with no synchronisation
    /// marker in them, more than the padding bound.
    MseGarbageAfterKey,
    /// A correct MSE handshake up to a padding length over the bound (1000 bytes).
    MseLongPadding,
    /// A correct MSE handshake with a verification constant that is not zero.
    MseWrongVc,
    /// An MSE handshake that stops midway and then sends nothing.
    MseStall,
}

impl Attack {
    /// Every attack, in the order the README lists them.
    pub const ALL: [Attack; 17] = [
        Attack::WrongInfoHash,
        Attack::BadBitfield,
        Attack::HaveOutOfRange,
        Attack::BadRequest,
        Attack::RequestFlood,
        Attack::RequestFloodFast,
        Attack::UnrequestedPiece,
        Attack::HugeLengthPrefix,
        Attack::Slowloris,
        Attack::SlowlorisHandshake,
        Attack::ChokeStorm,
        Attack::Silent,
        Attack::BadMetadata,
        Attack::MseGarbageAfterKey,
        Attack::MseLongPadding,
        Attack::MseWrongVc,
        Attack::MseStall,
    ];

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Attack::WrongInfoHash => "wrong_info_hash",
            Attack::BadBitfield => "bad_bitfield",
            Attack::HaveOutOfRange => "have_out_of_range",
            Attack::BadRequest => "bad_request",
            Attack::RequestFlood => "request_flood",
            Attack::RequestFloodFast => "request_flood_fast",
            Attack::UnrequestedPiece => "unrequested_piece",
            Attack::HugeLengthPrefix => "huge_length_prefix",
            Attack::Slowloris => "slowloris",
            Attack::SlowlorisHandshake => "slowloris_handshake",
            Attack::ChokeStorm => "choke_storm",
            Attack::Silent => "silent",
            Attack::BadMetadata => "bad_metadata",
            Attack::MseGarbageAfterKey => "mse_garbage_after_key",
            Attack::MseLongPadding => "mse_long_padding",
            Attack::MseWrongVc => "mse_wrong_vc",
            Attack::MseStall => "mse_stall",
        }
    }

    /// The attack called `name`.
    pub fn from_name(name: &str) -> Option<Attack> {
        Attack::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether it speaks the MSE handshake (so it reads what the honest peer sends: it needs
    /// the peer's Diffie-Hellman key).
    pub fn is_mse(self) -> bool {
        matches!(
            self,
            Attack::MseGarbageAfterKey
                | Attack::MseLongPadding
                | Attack::MseWrongVc
                | Attack::MseStall
        )
    }
}

/// The name of an encryption policy in scenario files and reports: `prefer`, `require`,
/// `plaintext`.
pub fn encryption_name(policy: Encryption) -> &'static str {
    match policy {
        Encryption::Prefer => "prefer",
        Encryption::Require => "require",
        Encryption::Plaintext => "plaintext",
    }
}

/// Whether a peer with policy `a` and one with policy `b` can connect at all (`None`: the
/// encryption layer off, which speaks plaintext only): only `require` against a peer that
/// never encrypts cannot.
pub fn policies_can_talk(a: Option<Encryption>, b: Option<Encryption>) -> bool {
    let encrypts =
        |p: Option<Encryption>| matches!(p, Some(Encryption::Prefer | Encryption::Require));
    let requires = |p: Option<Encryption>| p == Some(Encryption::Require);
    let refuses = |x, y| requires(x) && !encrypts(y);
    !refuses(a, b) && !refuses(b, a)
}

/// How a peer behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Serves wrong bytes for every block it uploads.
    Corrupt,
    /// Its disk serves one block read at a time, each taking this long.
    Slow(Duration),
    /// Leaves the swarm (closing its connections and announcing `stopped`) once it has verified
    /// this many pieces.
    LeaveAfter(u32),
}

/// A group of peers that share a role, a join window, bandwidth and behaviour.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    /// The name faults and reports use.
    pub name: String,
    /// Seeder or leecher.
    pub role: Role,
    /// How many peers.
    pub count: u32,
    /// Each peer joins at a time drawn uniformly from this window.
    pub join: (Duration, Duration),
    /// Upload bandwidth in bytes per second; `None` is unlimited.
    pub up: Option<u64>,
    /// Download bandwidth in bytes per second; `None` is unlimited.
    pub down: Option<u64>,
    /// How its peers pick pieces.
    pub strategy: Strategy,
    /// How its peers behave.
    pub behaviour: Behaviour,
    /// Most connections each of its peers keeps (bt's `--max-peers`).
    pub max_peers: usize,
    /// What its peers do, when the role is [`Role::Attacker`].
    pub attack: Option<Attack>,
    /// Leechers only: each peer starts from the info hash alone and fetches the metadata from
    /// its peers (BEP 9), as `bt get MAGNET` does.
    pub magnet: bool,
    /// A group (by index) whose every peer's address each peer of this one is given when it
    /// joins, to dial (`bt get --peer`, a magnet's `x.pe`).
    pub connect_to: Option<usize>,
    /// Whether its peers exchange peers (BEP 11 `ut_pex`; bt's default is on).
    pub pex: bool,
    /// Whether its peers run a DHT node (BEP 5); only with `[dht]`, where it is the default.
    pub dht: bool,
    /// Each peer's download rate limit in bytes per second of block payload (bt's
    /// `--download-limit`); `None` is unlimited.
    pub download_limit: Option<u64>,
    /// Each peer's upload rate limit (bt's `--upload-limit`); `None` is unlimited.
    pub upload_limit: Option<u64>,
    /// The files its peers download, by index (bt's `--select`); `None` is every file.
    pub select: Option<Vec<usize>>,
    /// Each peer stops by itself once its share ratio (block bytes uploaded in this life over
    /// the bytes of the verified pieces it holds) reaches this, as `bt get --seed-ratio` does;
    /// `None`: no ratio goal.
    pub seed_ratio: Option<SeedRatio>,
    /// Each peer stops by itself once it has seeded (had every wanted piece, running) this long,
    /// as `bt get --seed-time` does; `None`: no time goal.
    pub seed_time: Option<Duration>,
    /// Its peers' encryption policy (bt's `--encryption`); `None` runs the session without
    /// the encryption layer at all (plaintext only, as every scenario did before the key).
    pub encryption: Option<Encryption>,
    /// A simulated player on each of its peers (`reader`); `None`: nobody reads.
    pub reader: Option<ReaderSpec>,
    /// The transports its peers dial over, in the order of attempts (bt's `--transport`; the
    /// client's `ClientConfig::transports`). `[Tcp]` unless the file says otherwise; uTP is on
    /// (dials and incoming uTP connections) when it is listed.
    pub transports: Vec<Transport>,
}

impl GroupSpec {
    /// Its peers' seeding goal (`seed_ratio`, `seed_time`): the first reached stops the
    /// torrent. `None` when it has neither.
    pub fn seed_goal(&self) -> Option<SeedGoal> {
        let goal = SeedGoal {
            ratio: self.seed_ratio,
            time: self.seed_time,
        };
        (goal != SeedGoal::default()).then_some(goal)
    }

    /// Its peers' file priorities (`select`, as `bt get --select`) for a torrent of `files`
    /// files: `Normal` for a selected file, `Skip` for the others. `None` without `select`
    /// (every file wanted).
    pub fn file_priorities(&self, files: usize) -> Option<Vec<FilePriority>> {
        let select = self.select.as_ref()?;
        Some(
            (0..files)
                .map(|i| {
                    if select.contains(&i) {
                        FilePriority::Normal
                    } else {
                        FilePriority::Skip
                    }
                })
                .collect(),
        )
    }
}

/// Which peers of a group a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Every peer of the group.
    All,
    /// The peer with this index within the group (0-based).
    Index(u32),
    /// This many peers of the group, drawn at random among those it applies to.
    Random(u32),
}

/// A set of peers a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The group, by index.
    pub group: usize,
    /// Which of its peers.
    pub which: Which,
}

impl Target {
    /// Narrows `members` (the peers of the group the fault can apply to now, by host number in
    /// ascending order; `first` is the group's first host number) to those this target names:
    /// all of them, the one with the given index in the group (if it is among them), or `n` of
    /// them drawn with `rng`, in ascending order.
    pub fn choose<T: Copy + Ord + TryFrom<usize>>(
        &self,
        mut members: Vec<T>,
        first: usize,
        rng: &mut bt_protocol::rng::Rng,
    ) -> Vec<T> {
        match self.which {
            Which::All => members,
            Which::Index(i) => match T::try_from(first + i as usize) {
                Ok(h) if members.contains(&h) => vec![h],
                _ => Vec::new(),
            },
            Which::Random(n) => {
                rng.shuffle(&mut members);
                members.truncate(n as usize);
                members.sort_unstable();
                members
            }
        }
    }
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Nothing passes between a peer of a group in `a` and a peer of a group in `b` until a heal
    /// (TCP holds what is sent meanwhile and delivers it after the heal).
    Partition {
        /// Groups on one side.
        a: Vec<usize>,
        /// Groups on the other.
        b: Vec<usize>,
    },
    /// Ends every partition.
    Heal,
    /// The peers stop at once: no goodbye, connections go silent.
    Crash(Target),
    /// Crashed (or departed) peers come back with the pieces they had verified (fast resume).
    Restart(Target),
    /// The peers pause their torrent (bt's pause, as a `Client` command): connections closed,
    /// nothing requested or served, `stopped` announced, state kept.
    Pause(Target),
    /// Paused peers resume: `started` announced, their peer lists dialled again.
    Resume(Target),
    /// The tracker with this index stops answering.
    TrackerDown(usize),
    /// The tracker with this index answers again.
    TrackerUp(usize),
}

/// A fault and when it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    /// Simulated time.
    pub at: Duration,
    /// What happens.
    pub action: FaultAction,
}

/// What must hold for a run to pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expect {
    /// Every leecher that should complete (honest or slow, and up at the end) has completed by
    /// this simulated time.
    pub all_complete_by: Option<Duration>,
    /// No peer ever kept (verified) a piece with wrong content.
    pub no_corrupt_piece_kept: bool,
    /// Seeders uploaded at most this many times the torrent's size in total.
    pub seeder_upload_at_most: Option<f64>,
    /// Every corrupt peer was banned by at least one other peer.
    pub corrupt_peers_banned: bool,
    /// No peer that is not corrupt was banned by anyone.
    pub no_honest_peer_banned: bool,
    /// Attacker groups (by index) whose every connection to an honest peer was closed by the
    /// honest side for a reason other than a clean close, none left open.
    pub attackers_closed: Vec<usize>,
    /// With `attackers_closed`: each of those connections is closed within this long of opening
    /// (one still open at the end younger than this is pending, not a failure). `None`: by the
    /// end of the run.
    pub attackers_close_within: Option<Duration>,
    /// Of `attackers_closed`, groups judged only where the honest peer wants what the attacker
    /// announces: a connection still open at the end to a peer that had every piece within
    /// `attackers_close_within` of its open (a seeder, a leecher that completed) is not
    /// interested in anyone, so it passes (the protocol does not count chokes then).
    pub attackers_closed_if_interested: Vec<usize>,
    /// No honest peer ever had more than this many bytes queued to send on one connection to an
    /// attacker.
    pub queued_to_attackers_at_most: Option<u64>,
    /// Every magnet peer that joined had its metadata within this long of joining.
    pub magnets_resolved_within: Option<Duration>,
    /// Honest peers together learned at least this many new peers through PEX (BEP 11).
    pub pex_learned_at_least: Option<u64>,
    /// Honest peers together learned at least this many new peers through the DHT (BEP 5).
    pub dht_peers_found_at_least: Option<u64>,
    /// Every honest peer with a DHT node that joined had its first DHT lookup finished by this
    /// simulated time.
    pub dht_lookups_done_by: Option<Duration>,
    /// Every peer of a group with a seeding goal (`seed_ratio`, `seed_time`) that joined reached
    /// its goal and stopped.
    pub seed_goals_reached: bool,
    /// Per attacker group (by index): the only close reasons (by
    /// [`crate::engine::close_reason_name`]) its connections may be closed with.
    pub attack_reasons: BTreeMap<usize, Vec<String>>,
    /// Every two honest peers whose encryption policies can talk, at least one of them a
    /// leecher and both having joined, connected at least once.
    pub compatible_pairs_connected: bool,
    /// Every connection a peer with `encryption = "require"` took runs RC4.
    pub require_connections_rc4: bool,
    /// A peer dialled an address whose policy cannot talk to its own at most once per wait of
    /// its peer list's backoff (or after a tracker answer, which makes the address ready).
    pub incompatible_dials_backed_off: bool,
    /// Per group with a reader (by index): every player that started read its first byte
    /// within this long of its start.
    pub first_byte_within: BTreeMap<usize, Duration>,
    /// Per group with a reader: no player stalled more than this many times after its first
    /// byte.
    pub stalls_at_most: BTreeMap<usize, u32>,
    /// Per group with a reader: no player spent more than this long stalled in all.
    pub stall_seconds_at_most: BTreeMap<usize, Duration>,
    /// Shares of uplink bytes each class must reach.
    pub uplink_share_at_least: Vec<ShareExpect>,
    /// Bounds on the queueing delay at uplinks.
    pub queue_delay_at_most: Vec<DelayExpect>,
    /// Every uTP stream delivered the bytes sent (the stream-equality observer).
    pub utp_streams_equal: bool,
}

// ---- errors ----

/// A mistake in a scenario file: where, which key, and what is wrong. Boxed, so results that
/// carry it stay small; its fields are those of [`ScenarioErrorDetails`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError(Box<ScenarioErrorDetails>);

/// The contents of a [`ScenarioError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioErrorDetails {
    /// The file as named by the caller.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The dotted key (`torrent.size`, `group.count`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The offending line, when known.
    pub source_line: Option<String>,
}

impl std::ops::Deref for ScenarioError {
    type Target = ScenarioErrorDetails;

    fn deref(&self) -> &ScenarioErrorDetails {
        &self.0
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(line), Some(text)) = (self.line, &self.source_line) {
            let gutter = line.to_string().len();
            write!(f, "\n{line} | {text}")?;
            if let Some(column) = self.column {
                write!(f, "\n{:gutter$} | {:>column$}", "", "^")?;
            }
        }
        Ok(())
    }
}

impl ScenarioError {
    fn at(file: &str, source: &str, span: Option<Range<usize>>, message: String) -> Self {
        let mut error = ScenarioErrorDetails {
            file: file.to_owned(),
            line: None,
            column: None,
            key: None,
            message,
            source_line: None,
        };
        if let Some(span) = span {
            let start = span.start.min(source.len());
            let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = source[start..]
                .find('\n')
                .map_or(source.len(), |i| start + i);
            error.line = Some(source[..line_start].matches('\n').count() + 1);
            error.column = Some(source[line_start..start].chars().count() + 1);
            error.source_line = Some(source[line_start..line_end].trim_end().to_owned());
            error.key = key_at(source, line_start, line_end, start);
        }
        ScenarioError(Box::new(error))
    }
}

/// The dotted key whose line holds `offset`: the nearest table header above (`[torrent]`,
/// `[[group]]`) and the key before `=` on the line (or the key the offset points into).
fn key_at(source: &str, line_start: usize, line_end: usize, offset: usize) -> Option<String> {
    let line = &source[line_start..line_end];
    let trimmed = line.trim();
    if trimmed.starts_with('[') {
        return Some(trimmed.trim_matches(['[', ']', ' ']).to_owned());
    }
    let key = match line.find('=') {
        Some(eq) => line[..eq].trim(),
        None => {
            // A value continued on its own line, or a bare key: the word at the offset.
            let at = offset - line_start;
            let word_start = line[..at.min(line.len())]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .map_or(0, |i| i + 1);
            line[word_start..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .next()
                .unwrap_or("")
        }
    };
    let key = key.trim_matches(['"', '\'']);
    let table = source[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(['[', ']', ' ']).to_owned())
    });
    match (table, key.is_empty()) {
        (_, true) => None,
        (Some(table), false) => Some(format!("{table}.{key}")),
        (None, false) => Some(key.to_owned()),
    }
}

// ---- values with units ----

/// Seconds, integer or fractional, not negative.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = f64::deserialize(d)?;
        if !s.is_finite() || s < 0.0 {
            return Err(de::Error::custom(format!(
                "{s} is not a time in seconds (a number, 0 or more)"
            )));
        }
        if s > MAX_DURATION.as_secs_f64() {
            return Err(de::Error::custom(format!(
                "{s} s is longer than the {} days a scenario may last",
                MAX_DURATION.as_secs() / 86_400
            )));
        }
        Ok(Seconds(Duration::from_secs_f64(s)))
    }
}

/// Milliseconds, integer or fractional, not negative.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Millis(Duration);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ms = f64::deserialize(d)?;
        if !ms.is_finite() || !(0.0..=3_600_000.0).contains(&ms) {
            return Err(de::Error::custom(format!(
                "{ms} is not a delay in milliseconds (0 to 3,600,000)"
            )));
        }
        Ok(Millis(Duration::from_secs_f64(ms / 1000.0)))
    }
}

/// A byte count: an integer, or a string with a unit (`"64 MiB"`, `"1.5 MB"`; binary units
/// `KiB MiB GiB`, decimal units `kB KB MB GB`, `B`), and for rates an optional `/s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bytes(u64);

/// Parses `"64 MiB"`, `"500kB/s"`, `"1048576"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim_end();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 1048576, \"1 MiB\" or \"500 kB\")"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KiB, MiB, GiB, kB, MB or GB)"
            ));
        }
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(format!("`{text}` is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count: an integer, or a string such as \"64 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
                u64::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                parse_size(v).map(Bytes).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A share ratio (`seed_ratio`): a number or a string, read by [`SeedRatio::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ratio(SeedRatio);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Ratio;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a share ratio: a number such as 1.5, 0 or more")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ratio, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ratio, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ratio, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ratio, E> {
                SeedRatio::parse(v).map(Ratio).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Parses a duration written with units: `"90s"`, `"1.5 min"`, `"2h"`, `"1h 30m"`, `"500ms"`
/// (units `ms`, `s`, `m`/`min`, `h`, `d`, with or without a space, long forms such as
/// `seconds` too); at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration (say 90, \"90s\", \"2 min\" or \"1h 30m\")");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let after = after.trim_start();
        let end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(end);
        let scale = match unit {
            "ms" | "msec" | "millis" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = after.trim_start();
    }
    if !total.is_finite() || total > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "`{text}` is longer than the {} days a scenario may last",
            MAX_DURATION.as_secs() / 86_400
        ));
    }
    Ok(Duration::from_secs_f64(total))
}

/// A duration: seconds as a number (like every other time key), or a string with units
/// ([`parse_duration`]).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span(Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds, or a string such as \"90s\" or \"2 min\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Span, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Span, E> {
                if !v.is_finite() || v < 0.0 {
                    return Err(E::custom(format!(
                        "{v} is not a time in seconds (a number, 0 or more)"
                    )));
                }
                if v > MAX_DURATION.as_secs_f64() {
                    return Err(E::custom(format!(
                        "{v} s is longer than the {} days a scenario may last",
                        MAX_DURATION.as_secs() / 86_400
                    )));
                }
                Ok(Span(Duration::from_secs_f64(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                parse_duration(v).map(Span).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn parse_behaviour(text: &str) -> Result<Behaviour, String> {
    let number = |rest: &str, what: &str| {
        rest.trim()
            .parse::<u32>()
            .map_err(|_| format!("`{text}`: {what} must be a whole number"))
    };
    match text.trim() {
        "honest" => Ok(Behaviour::Honest),
        "corrupt" => Ok(Behaviour::Corrupt),
        "slow" => Ok(Behaviour::Slow(Duration::from_millis(100))),
        t => {
            if let Some(rest) = t.strip_prefix("slow=") {
                let ms = number(rest, "the read time in ms")?;
                if ms == 0 {
                    return Err(format!("`{text}`: a slow read takes at least 1 ms"));
                }
                Ok(Behaviour::Slow(Duration::from_millis(u64::from(ms))))
            } else if let Some(rest) = t.strip_prefix("leave_after=") {
                number(rest, "the piece count").map(Behaviour::LeaveAfter)
            } else {
                Err(format!(
                    "unknown behaviour `{text}` (expected honest, corrupt, slow, slow=MS or leave_after=N)"
                ))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Behaviour {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_behaviour(&s).map_err(de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawStrategy {
    Rarest,
    Sequential,
    Random,
}

// ---- the file as written ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    engine: Option<Spanned<String>>,
    #[serde(default)]
    seed: Option<u64>,
    duration: Seconds,
    torrent: RawTorrent,
    #[serde(default, rename = "tracker")]
    trackers: Vec<RawTracker>,
    #[serde(default)]
    link: RawLink,
    #[serde(default)]
    dht: Option<Spanned<RawDht>>,
    #[serde(default, rename = "group")]
    groups: Vec<Spanned<RawGroup>>,
    #[serde(default, rename = "fault")]
    faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    expect: RawExpect,
    #[serde(default, rename = "phase")]
    phases: Vec<Spanned<RawPhase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: String,
    from: Seconds,
    to: Seconds,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShare {
    group: String,
    transport: String,
    share: f64,
    #[serde(default)]
    phase: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelay {
    group: String,
    #[serde(default)]
    transport: Option<String>,
    p95_ms: u64,
    #[serde(default)]
    phase: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTorrent {
    size: Option<Spanned<Bytes>>,
    piece_length: Spanned<Bytes>,
    #[serde(default)]
    files: Option<Spanned<RawFiles>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFiles {
    Count(u32),
    Sizes(Vec<Bytes>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracker {
    kind: TrackerKind,
    interval: Spanned<Seconds>,
    #[serde(default)]
    peers: Option<Spanned<u32>>,
    #[serde(default)]
    loss: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    #[serde(default)]
    latency_ms: Option<Millis>,
    #[serde(default)]
    jitter_ms: Option<Millis>,
    #[serde(default)]
    loss: Option<Spanned<f64>>,
    #[serde(default)]
    buffer: Option<Spanned<Bytes>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDht {
    bootstrap: Spanned<u32>,
    #[serde(default)]
    loss: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    role: Role,
    #[serde(default)]
    count: Option<Spanned<u32>>,
    #[serde(default)]
    join: Option<Spanned<(Seconds, Seconds)>>,
    #[serde(default)]
    up: Option<Spanned<Bytes>>,
    #[serde(default)]
    down: Option<Spanned<Bytes>>,
    #[serde(default)]
    strategy: Option<RawStrategy>,
    #[serde(default)]
    behaviour: Option<Spanned<Behaviour>>,
    #[serde(default)]
    max_peers: Option<Spanned<u32>>,
    #[serde(default)]
    attack: Option<Spanned<String>>,
    #[serde(default)]
    magnet: Option<Spanned<bool>>,
    #[serde(default)]
    connect_to: Option<Spanned<String>>,
    #[serde(default)]
    pex: Option<Spanned<bool>>,
    #[serde(default)]
    dht: Option<Spanned<bool>>,
    #[serde(default)]
    download_limit: Option<Spanned<Bytes>>,
    #[serde(default)]
    upload_limit: Option<Spanned<Bytes>>,
    #[serde(default)]
    select: Option<Spanned<Vec<u32>>>,
    #[serde(default)]
    seed_ratio: Option<Spanned<Ratio>>,
    #[serde(default)]
    seed_time: Option<Spanned<Span>>,
    #[serde(default)]
    encryption: Option<Spanned<String>>,
    #[serde(default)]
    reader: Option<Spanned<reader::RawReader>>,
    #[serde(default)]
    transports: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: Seconds,
    #[serde(default)]
    partition: Option<Spanned<String>>,
    #[serde(default)]
    heal: Option<Spanned<bool>>,
    #[serde(default)]
    crash: Option<Spanned<String>>,
    #[serde(default)]
    restart: Option<Spanned<String>>,
    #[serde(default)]
    pause: Option<Spanned<String>>,
    #[serde(default)]
    resume: Option<Spanned<String>>,
    #[serde(default)]
    count: Option<Spanned<u32>>,
    #[serde(default)]
    tracker_down: Option<Spanned<usize>>,
    #[serde(default)]
    tracker_up: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    all_complete_by: Option<Seconds>,
    #[serde(default)]
    no_corrupt_piece_kept: Option<bool>,
    #[serde(default)]
    seeder_upload_at_most: Option<Spanned<f64>>,
    #[serde(default)]
    corrupt_peers_banned: Option<bool>,
    #[serde(default)]
    no_honest_peer_banned: Option<bool>,
    #[serde(default)]
    attackers_closed: Option<Spanned<RawGroups>>,
    #[serde(default)]
    attackers_close_within: Option<Spanned<Seconds>>,
    #[serde(default)]
    attackers_closed_if_interested: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    queued_to_attackers_at_most: Option<Spanned<Bytes>>,
    #[serde(default)]
    magnets_resolved_within: Option<Spanned<Seconds>>,
    #[serde(default)]
    pex_learned_at_least: Option<u64>,
    #[serde(default)]
    dht_peers_found_at_least: Option<u64>,
    #[serde(default)]
    dht_lookups_done_by: Option<Spanned<Seconds>>,
    #[serde(default)]
    seed_goals_reached: Option<Spanned<bool>>,
    #[serde(default)]
    attack_reasons: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    #[serde(default)]
    compatible_pairs_connected: Option<Spanned<bool>>,
    #[serde(default)]
    require_connections_rc4: Option<Spanned<bool>>,
    #[serde(default)]
    incompatible_dials_backed_off: Option<Spanned<bool>>,
    #[serde(default)]
    first_byte_within: Option<Spanned<reader::RawPerGroup<Seconds>>>,
    #[serde(default)]
    stalls_at_most: Option<Spanned<reader::RawPerGroup<u32>>>,
    #[serde(default)]
    stall_seconds_at_most: Option<Spanned<reader::RawPerGroup<Seconds>>>,
    #[serde(default)]
    uplink_share_at_least: Option<Spanned<Vec<RawShare>>>,
    #[serde(default)]
    queue_delay_at_most: Option<Spanned<Vec<RawDelay>>>,
    #[serde(default)]
    utp_streams_equal: Option<Spanned<bool>>,
}

/// `true` (every group it can apply to), `false`, or a list of group names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawGroups {
    All(bool),
    Names(Vec<String>),
}

// ---- checks ----

/// The file being checked, for errors that point into it.
struct Ctx<'a> {
    file: &'a str,
    source: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(self.file, self.source, Some(span), message.into())
    }

    fn err_key(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(
            self.file,
            self.source,
            find_key(self.source, key),
            message.into(),
        )
    }
}

impl Scenario {
    /// Reads a scenario from the text of a file; `file` names it in errors.
    pub fn parse(file: &str, source: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(source)
            .map_err(|e| ScenarioError::at(file, source, e.span(), e.message().to_owned()))?;
        let cx = Ctx { file, source };

        let engine = match &raw.engine {
            None => EngineKind::Fast,
            Some(name) => EngineKind::from_name(name.get_ref()).ok_or_else(|| {
                cx.err(
                    name.span(),
                    format!(
                        "unknown engine `{}` (expected fast or turmoil)",
                        name.get_ref()
                    ),
                )
            })?,
        };
        let duration = raw.duration.0;
        if duration.is_zero() {
            return Err(cx.err_key("duration", "the duration must be more than 0 s"));
        }
        let torrent = check_torrent(&cx, &raw.torrent)?;
        let dht = check_dht(&cx, raw.dht.as_ref())?;
        let trackers = check_trackers(&cx, &raw.trackers, &raw.groups, dht.is_some())?;
        let loss = match &raw.link.loss {
            None => 0.0,
            Some(l) if !(0.0..0.5).contains(l.get_ref()) => {
                return Err(cx.err(
                    l.span(),
                    format!(
                        "loss {} is not a fraction from 0 up to (not including) 0.5",
                        l.get_ref()
                    ),
                ));
            }
            Some(l) => *l.get_ref(),
        };
        let link = LinkSpec {
            latency: raw.link.latency_ms.map_or(Duration::ZERO, |m| m.0),
            jitter: raw.link.jitter_ms.map_or(Duration::ZERO, |m| m.0),
            loss,
            buffer: match &raw.link.buffer {
                Some(b) if b.get_ref().0 == 0 => {
                    return Err(cx.err(b.span(), "buffer must be at least 1 B"));
                }
                b => b.as_ref().map(|b| b.get_ref().0),
            },
        };
        let groups = check_groups(
            &cx,
            &raw.groups,
            duration,
            dht.is_some(),
            torrent.files.len(),
            engine,
        )?;
        let faults = check_faults(&cx, &raw.faults, &groups, trackers.len())?;
        let seeder_upload_at_most = match &raw.expect.seeder_upload_at_most {
            None => None,
            Some(x) if !(x.get_ref().is_finite() && *x.get_ref() >= 0.0) => {
                return Err(cx.err(x.span(), "must be a number, 0 or more"));
            }
            Some(x) => Some(*x.get_ref()),
        };
        let attackers_closed = check_attackers_closed(&cx, &raw.expect, &groups)?;
        let attackers_close_within = match &raw.expect.attackers_close_within {
            Some(w) if attackers_closed.is_empty() => {
                return Err(cx.err(
                    w.span(),
                    "attackers_close_within goes with attackers_closed",
                ));
            }
            Some(w) if w.get_ref().0.is_zero() => {
                return Err(cx.err(w.span(), "must be more than 0 s"));
            }
            w => w.as_ref().map(|w| w.get_ref().0),
        };
        let attackers_closed_if_interested = match &raw.expect.attackers_closed_if_interested {
            None => Vec::new(),
            Some(_) if attackers_close_within.is_none() => {
                return Err(cx.err_key(
                    "attackers_closed_if_interested",
                    "attackers_closed_if_interested goes with attackers_close_within",
                ));
            }
            Some(names) => names
                .get_ref()
                .iter()
                .map(|name| {
                    let g = group_index(&cx, &groups, name, names.span())?;
                    if !attackers_closed.contains(&g) {
                        return Err(cx.err(
                            names.span(),
                            format!("group `{}` is not in attackers_closed", groups[g].name),
                        ));
                    }
                    Ok(g)
                })
                .collect::<Result<_, _>>()?,
        };
        let magnets_resolved_within = match &raw.expect.magnets_resolved_within {
            Some(w) if !groups.iter().any(|g| g.magnet) => {
                return Err(cx.err(
                    w.span(),
                    "magnets_resolved_within needs a group with magnet = true",
                ));
            }
            Some(w) if w.get_ref().0.is_zero() => {
                return Err(cx.err(w.span(), "must be more than 0 s"));
            }
            w => w.as_ref().map(|w| w.get_ref().0),
        };
        if raw.expect.pex_learned_at_least.is_some()
            && !groups.iter().any(|g| g.pex && g.role != Role::Attacker)
        {
            return Err(cx.err_key(
                "pex_learned_at_least",
                "pex_learned_at_least needs a group with PEX on (every group has pex = false)",
            ));
        }
        if raw.expect.dht_peers_found_at_least.is_some()
            && !groups.iter().any(|g| g.dht && g.role != Role::Attacker)
        {
            return Err(cx.err_key(
                "dht_peers_found_at_least",
                "dht_peers_found_at_least needs a [dht] table and a group with dht on",
            ));
        }
        let any_dht = groups.iter().any(|g| g.dht && g.role != Role::Attacker);
        let dht_lookups_done_by = match &raw.expect.dht_lookups_done_by {
            Some(t) if !any_dht => {
                return Err(cx.err(
                    t.span(),
                    "dht_lookups_done_by needs a [dht] table and a group with dht on",
                ));
            }
            t => t.as_ref().map(|t| t.get_ref().0),
        };
        let seed_goals_reached = match &raw.expect.seed_goals_reached {
            Some(b) if *b.get_ref() && !groups.iter().any(|g| g.seed_goal().is_some()) => {
                return Err(cx.err(
                    b.span(),
                    "seed_goals_reached needs a group with seed_ratio or seed_time",
                ));
            }
            b => b.as_ref().is_some_and(|b| *b.get_ref()),
        };
        let attack_reasons = match &raw.expect.attack_reasons {
            None => BTreeMap::new(),
            Some(map) => map
                .get_ref()
                .iter()
                .map(|(name, reasons)| {
                    let g = group_index(&cx, &groups, name, map.span())?;
                    if groups[g].role != Role::Attacker {
                        return Err(cx.err(
                            map.span(),
                            format!("group `{name}` is not of role \"attacker\""),
                        ));
                    }
                    if reasons.is_empty() {
                        return Err(cx.err(
                            map.span(),
                            format!("attack_reasons names no reason for `{name}`"),
                        ));
                    }
                    Ok((g, reasons.clone()))
                })
                .collect::<Result<_, _>>()?,
        };
        let any_encryption = groups.iter().any(|g| g.encryption.is_some());
        let needs_encryption = |b: &Option<Spanned<bool>>, key: &str| match b {
            Some(b) if *b.get_ref() && !any_encryption => Err(cx.err(
                b.span(),
                format!("{key} needs a group with `encryption` set"),
            )),
            b => Ok(b.as_ref().is_some_and(|b| *b.get_ref())),
        };
        let compatible_pairs_connected = needs_encryption(
            &raw.expect.compatible_pairs_connected,
            "compatible_pairs_connected",
        )?;
        let require_connections_rc4 = needs_encryption(
            &raw.expect.require_connections_rc4,
            "require_connections_rc4",
        )?;
        let incompatible_dials_backed_off = needs_encryption(
            &raw.expect.incompatible_dials_backed_off,
            "incompatible_dials_backed_off",
        )?;
        let phases = check_phases(&cx, &raw.phases, duration)?;
        let (uplink_share_at_least, queue_delay_at_most, utp_streams_equal) =
            check_transport_expect(&cx, &raw.expect, &groups, &phases)?;
        let expect = Expect {
            uplink_share_at_least,
            queue_delay_at_most,
            utp_streams_equal,
            first_byte_within: reader::per_group_seconds(
                &cx,
                &groups,
                raw.expect.first_byte_within.as_ref(),
                "first_byte_within",
            )?,
            stalls_at_most: reader::per_group(
                &cx,
                &groups,
                raw.expect.stalls_at_most.as_ref(),
                "stalls_at_most",
            )?,
            stall_seconds_at_most: reader::per_group_seconds(
                &cx,
                &groups,
                raw.expect.stall_seconds_at_most.as_ref(),
                "stall_seconds_at_most",
            )?,
            attack_reasons,
            compatible_pairs_connected,
            require_connections_rc4,
            incompatible_dials_backed_off,
            seed_goals_reached,
            dht_lookups_done_by,
            dht_peers_found_at_least: raw.expect.dht_peers_found_at_least,
            magnets_resolved_within,
            pex_learned_at_least: raw.expect.pex_learned_at_least,
            attackers_closed,
            attackers_close_within,
            attackers_closed_if_interested,
            queued_to_attackers_at_most: raw
                .expect
                .queued_to_attackers_at_most
                .as_ref()
                .map(|b| b.get_ref().0),
            all_complete_by: raw.expect.all_complete_by.map(|s| s.0),
            no_corrupt_piece_kept: raw.expect.no_corrupt_piece_kept.unwrap_or(false),
            seeder_upload_at_most,
            corrupt_peers_banned: raw.expect.corrupt_peers_banned.unwrap_or(false),
            no_honest_peer_banned: raw.expect.no_honest_peer_banned.unwrap_or(false),
        };
        Ok(Scenario {
            engine,
            seed: raw.seed.unwrap_or(1),
            duration,
            torrent,
            trackers,
            link,
            dht,
            groups,
            faults,
            expect,
            phases,
        })
    }

    /// Reads a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::at(&name, "", None, format!("cannot read it: {e}")))?;
        Scenario::parse(&name, &source)
    }

    /// The announcer's interval floor in a simulated swarm: bt's minute, lowered to the shortest
    /// tracker interval so short scenario intervals take effect.
    pub fn announce_interval_floor(&self) -> Duration {
        self.trackers
            .iter()
            .map(|t| t.interval)
            .min()
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60))
    }

    /// Total peers over all groups (the DHT's bootstrap nodes not included: see
    /// [`Scenario::dht_bootstrap_count`]).
    pub fn host_count(&self) -> u32 {
        self.groups.iter().map(|g| g.count).sum()
    }

    /// The DHT-only bootstrap hosts (`[dht] bootstrap`), 0 without a DHT.
    pub fn dht_bootstrap_count(&self) -> u32 {
        self.dht.as_ref().map_or(0, |d| d.bootstrap)
    }

    /// The group with this name.
    pub fn group(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }
}

/// The span of the first line that starts with `key`, for errors about a key serde accepted.
fn find_key(source: &str, key: &str) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(key) {
            let start = offset + (line.len() - trimmed.len());
            return Some(start..start + key.len());
        }
        offset += line.len();
    }
    None
}

fn check_torrent(cx: &Ctx<'_>, raw: &RawTorrent) -> Result<TorrentSpec, ScenarioError> {
    let piece_length = raw.piece_length.get_ref().0;
    if piece_length == 0 || piece_length > u64::from(bt_protocol::metainfo::MAX_PIECE_LENGTH) {
        return Err(cx.err(
            raw.piece_length.span(),
            format!("piece_length {piece_length} must be 1 byte to 512 MiB"),
        ));
    }
    let files: Vec<u64> = match (&raw.size, &raw.files) {
        (None, None) => {
            return Err(cx.err_key(
                "[torrent]",
                "[torrent] needs `size` (or `files` as a list of sizes)",
            ));
        }
        (Some(size), None) => vec![size.get_ref().0],
        (size, Some(files)) => match files.get_ref() {
            RawFiles::Count(n) => {
                let size = size.as_ref().ok_or_else(|| {
                    cx.err(
                        files.span(),
                        "a file count needs `size` too (or give `files` as a list of sizes)",
                    )
                })?;
                let n = *n as usize;
                if n == 0 || n > MAX_FILES {
                    return Err(cx.err(files.span(), format!("files must be 1 to {MAX_FILES}")));
                }
                let total = size.get_ref().0;
                let each = total / n as u64;
                let mut v = vec![each; n];
                v[n - 1] += total - each * n as u64;
                v
            }
            RawFiles::Sizes(sizes) => {
                if sizes.is_empty() || sizes.len() > MAX_FILES {
                    return Err(cx.err(
                        files.span(),
                        format!("files must list 1 to {MAX_FILES} sizes"),
                    ));
                }
                let v: Vec<u64> = sizes.iter().map(|b| b.0).collect();
                let sum = v.iter().fold(0u64, |a, b| a.saturating_add(*b));
                if let Some(size) = size
                    && size.get_ref().0 != sum
                {
                    return Err(cx.err(
                        size.span(),
                        format!(
                            "size {} differs from the files' total {sum}",
                            size.get_ref().0
                        ),
                    ));
                }
                v
            }
        },
    };
    let total = files.iter().fold(0u64, |a, b| a.saturating_add(*b));
    let span = raw
        .size
        .as_ref()
        .map(|s| s.span())
        .or_else(|| raw.files.as_ref().map(|f| f.span()))
        .unwrap_or_else(|| raw.piece_length.span());
    if total == 0 {
        return Err(cx.err(span, "the torrent must hold at least 1 byte"));
    }
    if total > MAX_TORRENT_BYTES {
        return Err(cx.err(
            span,
            format!(
                "{total} bytes is more than the {} GiB the simulator holds in memory",
                MAX_TORRENT_BYTES >> 30
            ),
        ));
    }
    TorrentLayout::new(piece_length, &files)
        .map_err(|e| cx.err(raw.piece_length.span(), e.to_string()))?;
    Ok(TorrentSpec {
        piece_length,
        files,
    })
}

/// The `[dht]` table: its bootstrap count (1 to [`MAX_DHT_BOOTSTRAP`]) and loss.
fn check_dht(
    cx: &Ctx<'_>,
    raw: Option<&Spanned<RawDht>>,
) -> Result<Option<DhtSpec>, ScenarioError> {
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return Ok(None);
    };
    let bootstrap = *raw.bootstrap.get_ref();
    if !(1..=MAX_DHT_BOOTSTRAP).contains(&bootstrap) {
        return Err(cx.err(
            raw.bootstrap.span(),
            format!("bootstrap must be 1 to {MAX_DHT_BOOTSTRAP} nodes"),
        ));
    }
    let loss = match &raw.loss {
        None => 0.0,
        Some(l) if !(0.0..0.5).contains(l.get_ref()) => {
            return Err(cx.err(
                l.span(),
                format!(
                    "loss {} is not a fraction from 0 up to (not including) 0.5",
                    l.get_ref()
                ),
            ));
        }
        Some(l) => *l.get_ref(),
    };
    Ok(Some(DhtSpec { bootstrap, loss }))
}

fn check_trackers(
    cx: &Ctx<'_>,
    raw: &[RawTracker],
    groups: &[Spanned<RawGroup>],
    dht: bool,
) -> Result<Vec<TrackerSpec>, ScenarioError> {
    if raw.is_empty() && !dht && !groups.iter().any(|g| g.get_ref().connect_to.is_some()) {
        return Err(ScenarioError::at(
            cx.file,
            cx.source,
            None,
            "at least one [[tracker]] is needed: peers find each other through it (or through \
             a group's `connect_to`, or the DHT of a [dht] table)"
                .into(),
        ));
    }
    if raw.len() > MAX_TRACKERS {
        return Err(cx.err_key("[[tracker]]", format!("more than {MAX_TRACKERS} trackers")));
    }
    raw.iter()
        .map(|t| {
            if t.interval.get_ref().0 < Duration::from_secs(1) {
                return Err(cx.err(t.interval.span(), "the interval must be at least 1 s"));
            }
            let max_peers = match &t.peers {
                None => 50,
                Some(p) if *p.get_ref() == 0 || *p.get_ref() > 1000 => {
                    return Err(cx.err(p.span(), "peers must be 1 to 1000"));
                }
                Some(p) => *p.get_ref() as usize,
            };
            let loss = match &t.loss {
                None => 0.0,
                Some(l) if !(0.0..=0.9).contains(l.get_ref()) => {
                    return Err(cx.err(
                        l.span(),
                        format!("loss {} is not a fraction from 0 to 0.9", l.get_ref()),
                    ));
                }
                Some(l) => *l.get_ref(),
            };
            Ok(TrackerSpec {
                kind: t.kind,
                interval: t.interval.get_ref().0,
                max_peers,
                loss,
            })
        })
        .collect()
}

/// The `[[phase]]` tables: named windows within the run, at most [`MAX_PHASES`].
fn check_phases(
    cx: &Ctx<'_>,
    raw: &[Spanned<RawPhase>],
    duration: Duration,
) -> Result<Vec<PhaseSpec>, ScenarioError> {
    let mut phases: Vec<PhaseSpec> = Vec::new();
    for p in raw {
        let r = p.get_ref();
        if phases.len() == MAX_PHASES {
            return Err(cx.err(p.span(), format!("more than {MAX_PHASES} phases")));
        }
        let name = r.name.trim().to_owned();
        if name.is_empty() || name == "run" || phases.iter().any(|q| q.name == name) {
            return Err(cx.err(
                p.span(),
                format!("phase name `{name}` is empty, `run` or used twice"),
            ));
        }
        if r.from.0 >= r.to.0 || r.from.0 > duration {
            return Err(cx.err(
                p.span(),
                "a phase needs from < to, from within the duration",
            ));
        }
        phases.push(PhaseSpec {
            name,
            from: r.from.0,
            to: r.to.0,
        });
    }
    Ok(phases)
}

/// The transport expectations: `uplink_share_at_least`, `queue_delay_at_most` (groups and
/// phases named in the file, a known class) and `utp_streams_equal` (a group on uTP).
#[allow(clippy::type_complexity)]
fn check_transport_expect(
    cx: &Ctx<'_>,
    raw: &RawExpect,
    groups: &[GroupSpec],
    phases: &[PhaseSpec],
) -> Result<(Vec<ShareExpect>, Vec<DelayExpect>, bool), ScenarioError> {
    use crate::transport::Class;
    let phase = |p: &Option<String>, span: Range<usize>| match p {
        Some(name) if !phases.iter().any(|q| &q.name == name) => {
            Err(cx.err(span, format!("no [[phase]] is named `{name}`")))
        }
        p => Ok(p.clone()),
    };
    let class = |name: &str, span: Range<usize>| {
        Class::from_name(name.trim()).ok_or_else(|| {
            cx.err(
                span,
                format!("unknown transport `{name}` (expected tcp, utp or dht)"),
            )
        })
    };
    let mut shares = Vec::new();
    if let Some(list) = &raw.uplink_share_at_least {
        for e in list.get_ref() {
            let span = list.span();
            if !(0.0..=1.0).contains(&e.share) {
                return Err(cx.err(span, "share must be a fraction from 0 to 1"));
            }
            shares.push(ShareExpect {
                group: group_index(cx, groups, &e.group, span.clone())?,
                transport: class(&e.transport, span.clone())?,
                share: e.share,
                phase: phase(&e.phase, span)?,
            });
        }
    }
    let mut delays = Vec::new();
    if let Some(list) = &raw.queue_delay_at_most {
        for e in list.get_ref() {
            let span = list.span();
            delays.push(DelayExpect {
                group: group_index(cx, groups, &e.group, span.clone())?,
                transport: e
                    .transport
                    .as_deref()
                    .map(|t| class(t, span.clone()))
                    .transpose()?,
                p95_ms: e.p95_ms,
                phase: phase(&e.phase, span)?,
            });
        }
    }
    let streams = match &raw.utp_streams_equal {
        Some(b)
            if *b.get_ref()
                && !groups
                    .iter()
                    .any(|g| g.transports.contains(&Transport::Utp)) =>
        {
            return Err(cx.err(
                b.span(),
                "utp_streams_equal needs a group with utp in transports",
            ));
        }
        b => b.as_ref().is_some_and(|b| *b.get_ref()),
    };
    Ok((shares, delays, streams))
}

/// A group's `transports`: a non-empty list of `"utp"` and `"tcp"`, each at most once, in the
/// order a dial tries them; `["tcp"]` when absent. Not for attackers (their scripts speak TCP).
fn check_transports(cx: &Ctx<'_>, r: &RawGroup) -> Result<Vec<Transport>, ScenarioError> {
    let Some(list) = &r.transports else {
        return Ok(vec![Transport::Tcp]);
    };
    if r.role == Role::Attacker {
        return Err(cx.err(
            list.span(),
            "an attacker follows its `attack` over TCP: transports is for seeders and leechers",
        ));
    }
    let mut transports = Vec::new();
    for name in list.get_ref() {
        let t = match name.trim() {
            "tcp" => Transport::Tcp,
            "utp" => Transport::Utp,
            other => {
                return Err(cx.err(
                    list.span(),
                    format!("unknown transport `{other}` (expected utp or tcp)"),
                ));
            }
        };
        if transports.contains(&t) {
            return Err(cx.err(
                list.span(),
                format!("transport `{}` is listed twice", t.name()),
            ));
        }
        transports.push(t);
    }
    if transports.is_empty() {
        return Err(cx.err(list.span(), "transports names no transport"));
    }
    Ok(transports)
}

fn check_groups(
    cx: &Ctx<'_>,
    raw: &[Spanned<RawGroup>],
    duration: Duration,
    dht: bool,
    files: usize,
    engine: EngineKind,
) -> Result<Vec<GroupSpec>, ScenarioError> {
    if raw.is_empty() {
        return Err(ScenarioError::at(
            cx.file,
            cx.source,
            None,
            "at least one [[group]] of peers is needed".into(),
        ));
    }
    if raw.len() > MAX_GROUPS {
        return Err(cx.err(
            raw[MAX_GROUPS].span(),
            format!("more than {MAX_GROUPS} groups"),
        ));
    }
    let mut groups: Vec<GroupSpec> = Vec::new();
    let mut hosts: u64 = 0;
    for g in raw {
        let r = g.get_ref();
        let name = r.name.get_ref().trim().to_owned();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(cx.err(
                r.name.span(),
                format!("group name `{name}` must be letters, digits, `-` or `_`"),
            ));
        }
        if groups.iter().any(|o| o.name == name) {
            return Err(cx.err(r.name.span(), format!("two groups are named `{name}`")));
        }
        let count = r.count.as_ref().map_or(1, |c| *c.get_ref());
        if let Some(c) = &r.count
            && count == 0
        {
            return Err(cx.err(c.span(), "count must be at least 1"));
        }
        hosts += u64::from(count);
        if hosts > u64::from(MAX_HOSTS) {
            return Err(cx.err(
                r.count.as_ref().map_or(g.span(), |c| c.span()),
                format!("more than {MAX_HOSTS} peers in all"),
            ));
        }
        let join = match &r.join {
            None => (Duration::ZERO, Duration::ZERO),
            Some(j) => {
                let (a, b) = (j.get_ref().0.0, j.get_ref().1.0);
                if a > b {
                    return Err(cx.err(j.span(), "the join window's start is after its end"));
                }
                if a >= duration {
                    return Err(cx.err(j.span(), "the join window starts after the run ends"));
                }
                (a, b)
            }
        };
        let rate = |v: &Option<Spanned<Bytes>>| match v {
            None => Ok(None),
            Some(b) if b.get_ref().0 == 0 => Err(cx.err(
                b.span(),
                "bandwidth must be at least 1 byte/s (leave the key out for unlimited)",
            )),
            Some(b) => Ok(Some(b.get_ref().0)),
        };
        let behaviour = r
            .behaviour
            .as_ref()
            .map_or(Behaviour::Honest, |b| *b.get_ref());
        if let (Some(b), Behaviour::LeaveAfter(_), Role::Seeder) = (&r.behaviour, behaviour, r.role)
        {
            return Err(cx.err(
                b.span(),
                "leave_after counts pieces downloaded: it applies to leechers",
            ));
        }
        let attack = match (&r.attack, r.role) {
            (None, Role::Attacker) => {
                return Err(cx.err(
                    r.name.span(),
                    format!(
                        "a group of role \"attacker\" needs `attack` (one of {})",
                        attack_names()
                    ),
                ));
            }
            (None, _) => None,
            (Some(a), Role::Attacker) => match Attack::from_name(a.get_ref().trim()) {
                Some(attack) => Some(attack),
                None if a.get_ref().trim() == "corrupt" => {
                    return Err(cx.err(
                        a.span(),
                        "corrupt data comes from a protocol peer: give a seeder group \
                         behaviour = \"corrupt\"",
                    ));
                }
                None => {
                    return Err(cx.err(
                        a.span(),
                        format!(
                            "unknown attack `{}` (expected one of {})",
                            a.get_ref(),
                            attack_names()
                        ),
                    ));
                }
            },
            (Some(a), _) => {
                return Err(cx.err(a.span(), "`attack` goes with role = \"attacker\""));
            }
        };
        if let (Some(b), Role::Attacker) = (&r.behaviour, r.role)
            && behaviour != Behaviour::Honest
        {
            return Err(cx.err(
                b.span(),
                "an attacker follows its `attack`, not a behaviour",
            ));
        }
        let max_peers = match &r.max_peers {
            None => TorrentConfig::default().max_peers,
            Some(m) if !(1..=1000).contains(m.get_ref()) => {
                return Err(cx.err(m.span(), "max_peers must be 1 to 1000"));
            }
            Some(m) => *m.get_ref() as usize,
        };
        let magnet = match &r.magnet {
            Some(m) if *m.get_ref() && r.role != Role::Leecher => {
                return Err(cx.err(
                    m.span(),
                    "magnet = true goes with role = \"leecher\" (a seeder has the metadata; an \
                     attacker is a script)",
                ));
            }
            m => m.as_ref().is_some_and(|m| *m.get_ref()),
        };
        if let (Some(c), Role::Attacker) = (&r.connect_to, r.role) {
            return Err(cx.err(
                c.span(),
                "an attacker dials the peers its tracker gives: connect_to is for seeders and \
                 leechers",
            ));
        }
        if let (Some(p), Role::Attacker) = (&r.pex, r.role) {
            return Err(cx.err(
                p.span(),
                "an attacker follows its `attack`: pex is for seeders and leechers",
            ));
        }
        let dht_on = match &r.dht {
            Some(d) if !dht => {
                return Err(cx.err(
                    d.span(),
                    "dht goes with a [dht] table (its bootstrap nodes)",
                ));
            }
            Some(d) if r.role == Role::Attacker => {
                return Err(cx.err(
                    d.span(),
                    "an attacker follows its `attack`: dht is for seeders and leechers",
                ));
            }
            Some(d) => *d.get_ref(),
            None => dht && r.role != Role::Attacker,
        };
        let limit = |v: &Option<Spanned<Bytes>>, key: &str| match v {
            Some(b) if r.role == Role::Attacker => Err(cx.err(
                b.span(),
                format!("an attacker follows its `attack`: {key} is for seeders and leechers"),
            )),
            Some(b) if b.get_ref().0 < 1024 => Err(cx.err(
                b.span(),
                format!("{key} must be at least 1 KiB/s (leave the key out for no limit)"),
            )),
            Some(b) => Ok(Some(b.get_ref().0)),
            None => Ok(None),
        };
        let goal_key = |span: Range<usize>, key: &str| {
            cx.err(
                span,
                format!("an attacker follows its `attack`: {key} is for seeders and leechers"),
            )
        };
        let seed_ratio = match &r.seed_ratio {
            Some(x) if r.role == Role::Attacker => return Err(goal_key(x.span(), "seed_ratio")),
            x => x.as_ref().map(|x| x.get_ref().0),
        };
        let seed_time = match &r.seed_time {
            Some(x) if r.role == Role::Attacker => return Err(goal_key(x.span(), "seed_time")),
            x => x.as_ref().map(|x| x.get_ref().0),
        };
        let download_limit = limit(&r.download_limit, "download_limit")?;
        let upload_limit = limit(&r.upload_limit, "upload_limit")?;
        let encryption = match &r.encryption {
            None => None,
            Some(e) if r.role == Role::Attacker => {
                return Err(goal_key(e.span(), "encryption"));
            }
            Some(e) => Some(match e.get_ref().trim() {
                "prefer" => Encryption::Prefer,
                "require" => Encryption::Require,
                "plaintext" => Encryption::Plaintext,
                other => {
                    return Err(cx.err(
                        e.span(),
                        format!(
                            "unknown encryption `{other}` (expected prefer, require or plaintext)"
                        ),
                    ));
                }
            }),
        };
        if let (Some(x), Some(Encryption::Prefer | Encryption::Require)) =
            (&r.seed_ratio, encryption)
        {
            return Err(cx.err(
                x.span(),
                "seed_ratio is checked against the block bytes read off the wire, which RC4 \
                 hides: not with encryption = \"prefer\" or \"require\"",
            ));
        }
        let select = match &r.select {
            None => None,
            Some(s) if r.role != Role::Leecher || magnet => {
                return Err(cx.err(
                    s.span(),
                    "select goes with role = \"leecher\" and a torrent file (not magnet = true)",
                ));
            }
            Some(s) => {
                let mut chosen: Vec<usize> = Vec::new();
                for &i in s.get_ref() {
                    if i as usize >= files {
                        return Err(cx.err(
                            s.span(),
                            format!(
                                "select names file {i}; the torrent has {files} (0 to {})",
                                files - 1
                            ),
                        ));
                    }
                    if !chosen.contains(&(i as usize)) {
                        chosen.push(i as usize);
                    }
                }
                if chosen.is_empty() {
                    return Err(cx.err(s.span(), "select names no file"));
                }
                chosen.sort_unstable();
                Some(chosen)
            }
        };
        let reader = r
            .reader
            .as_ref()
            .map(|raw| {
                reader::check_reader(cx, raw, r.role, magnet, select.as_deref(), files, engine)
            })
            .transpose()?;
        let transports = check_transports(cx, r)?;
        if let (Some(x), true) = (&r.seed_ratio, transports.contains(&Transport::Utp)) {
            return Err(cx.err(
                x.span(),
                "seed_ratio is checked against the block bytes the wire observer reads on TCP \
                 streams: not with utp in transports",
            ));
        }
        groups.push(GroupSpec {
            transports,
            reader,
            encryption,
            seed_ratio,
            seed_time,
            magnet,
            download_limit,
            upload_limit,
            select,
            connect_to: None,
            pex: r.pex.as_ref().is_none_or(|p| *p.get_ref()),
            dht: dht_on,
            max_peers,
            name,
            role: r.role,
            count,
            join,
            up: rate(&r.up)?,
            down: rate(&r.down)?,
            strategy: match r.strategy.unwrap_or(RawStrategy::Rarest) {
                RawStrategy::Rarest => Strategy::RarestFirst,
                RawStrategy::Sequential => Strategy::Sequential,
                RawStrategy::Random => Strategy::Random,
            },
            behaviour,
            attack,
        });
    }
    // `connect_to` names any group, before or after this one.
    for (g, r) in raw.iter().enumerate() {
        if let Some(c) = &r.get_ref().connect_to {
            groups[g].connect_to = Some(group_index(cx, &groups, c.get_ref(), c.span())?);
        }
    }
    Ok(groups)
}

/// The attack names, for error messages.
fn attack_names() -> String {
    let names: Vec<&str> = Attack::ALL.iter().map(|a| a.name()).collect();
    names.join(", ")
}

/// The attacker groups `attackers_closed` names: all of them for `true`, none for `false`.
fn check_attackers_closed(
    cx: &Ctx<'_>,
    raw: &RawExpect,
    groups: &[GroupSpec],
) -> Result<Vec<usize>, ScenarioError> {
    let Some(value) = &raw.attackers_closed else {
        return Ok(Vec::new());
    };
    let attackers = || (0..groups.len()).filter(|g| groups[*g].role == Role::Attacker);
    match value.get_ref() {
        RawGroups::All(false) => Ok(Vec::new()),
        RawGroups::All(true) if attackers().next().is_none() => Err(cx.err(
            value.span(),
            "attackers_closed needs a group of role \"attacker\"",
        )),
        RawGroups::All(true) => Ok(attackers().collect()),
        RawGroups::Names(names) => names
            .iter()
            .map(|name| {
                let g = group_index(cx, groups, name, value.span())?;
                if groups[g].role != Role::Attacker {
                    return Err(cx.err(
                        value.span(),
                        format!("group `{}` is not of role \"attacker\"", groups[g].name),
                    ));
                }
                Ok(g)
            })
            .collect(),
    }
}

fn group_index(
    cx: &Ctx<'_>,
    groups: &[GroupSpec],
    name: &str,
    span: Range<usize>,
) -> Result<usize, ScenarioError> {
    groups
        .iter()
        .position(|g| g.name == name.trim())
        .ok_or_else(|| {
            let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            cx.err(
                span,
                format!(
                    "no group named `{}` (groups: {})",
                    name.trim(),
                    known.join(", ")
                ),
            )
        })
}

fn check_target(
    cx: &Ctx<'_>,
    groups: &[GroupSpec],
    s: &Spanned<String>,
    count: &Option<Spanned<u32>>,
) -> Result<Target, ScenarioError> {
    let text = s.get_ref();
    let (name, index) = match text.split_once('#') {
        Some((name, index)) => {
            let i = index.trim().parse::<u32>().map_err(|_| {
                cx.err(
                    s.span(),
                    format!("`{text}`: after `#` comes a peer's index within its group"),
                )
            })?;
            (name, Some(i))
        }
        None => (text.as_str(), None),
    };
    let group = group_index(cx, groups, name, s.span())?;
    let g = &groups[group];
    let which = match (index, count) {
        (Some(_), Some(c)) => {
            return Err(cx.err(c.span(), "give either `group#index` or `count`, not both"));
        }
        (Some(i), None) if i >= g.count => {
            return Err(cx.err(
                s.span(),
                format!(
                    "group `{}` has {} peers (indices 0 to {})",
                    g.name,
                    g.count,
                    g.count - 1
                ),
            ));
        }
        (Some(i), None) => Which::Index(i),
        (None, Some(c)) if *c.get_ref() == 0 => {
            return Err(cx.err(c.span(), "count must be at least 1"));
        }
        (None, Some(c)) => Which::Random(*c.get_ref()),
        (None, None) => Which::All,
    };
    Ok(Target { group, which })
}

fn check_faults(
    cx: &Ctx<'_>,
    raw: &[Spanned<RawFault>],
    groups: &[GroupSpec],
    trackers: usize,
) -> Result<Vec<FaultSpec>, ScenarioError> {
    if raw.len() > MAX_FAULTS {
        return Err(cx.err(
            raw[MAX_FAULTS].span(),
            format!("more than {MAX_FAULTS} faults"),
        ));
    }
    let mut faults = Vec::new();
    for f in raw {
        let r = f.get_ref();
        let mut actions = Vec::new();
        if let Some(p) = &r.partition {
            let (a, b) = p.get_ref().split_once('|').ok_or_else(|| {
                cx.err(
                    p.span(),
                    "a partition is `groups|groups`, e.g. \"seeders|leechers,late\"",
                )
            })?;
            let side = |text: &str| -> Result<Vec<usize>, ScenarioError> {
                text.split(',')
                    .map(|name| group_index(cx, groups, name, p.span()))
                    .collect()
            };
            let (a, b) = (side(a)?, side(b)?);
            if a.iter().any(|g| b.contains(g)) {
                return Err(cx.err(p.span(), "a group cannot be on both sides"));
            }
            actions.push(FaultAction::Partition { a, b });
        }
        if let Some(h) = &r.heal {
            if !*h.get_ref() {
                return Err(cx.err(h.span(), "heal = false does nothing: leave the fault out"));
            }
            actions.push(FaultAction::Heal);
        }
        if let Some(c) = &r.crash {
            actions.push(FaultAction::Crash(check_target(cx, groups, c, &r.count)?));
        }
        if let Some(c) = &r.restart {
            actions.push(FaultAction::Restart(check_target(cx, groups, c, &r.count)?));
        }
        for (c, pause) in [(&r.pause, true), (&r.resume, false)] {
            if let Some(c) = c {
                let target = check_target(cx, groups, c, &r.count)?;
                if groups[target.group].role == Role::Attacker {
                    return Err(cx.err(c.span(), "an attacker has no torrent to pause or resume"));
                }
                actions.push(if pause {
                    FaultAction::Pause(target)
                } else {
                    FaultAction::Resume(target)
                });
            }
        }
        if let Some(c) = &r.count
            && r.crash.is_none()
            && r.restart.is_none()
            && r.pause.is_none()
            && r.resume.is_none()
        {
            return Err(cx.err(c.span(), "count goes with crash, restart, pause or resume"));
        }
        for (t, down) in [(&r.tracker_down, true), (&r.tracker_up, false)] {
            if let Some(t) = t {
                if *t.get_ref() >= trackers {
                    return Err(cx.err(
                        t.span(),
                        format!(
                            "no tracker {} (the [[tracker]] tables are numbered 0 to {})",
                            t.get_ref(),
                            trackers - 1
                        ),
                    ));
                }
                actions.push(if down {
                    FaultAction::TrackerDown(*t.get_ref())
                } else {
                    FaultAction::TrackerUp(*t.get_ref())
                });
            }
        }
        if actions.len() != 1 {
            return Err(cx.err(
                f.span(),
                format!(
                    "a [[fault]] needs exactly one of partition, heal, crash, restart, pause, \
                     resume, tracker_down, tracker_up (this one has {})",
                    actions.len()
                ),
            ));
        }
        faults.push(FaultSpec {
            at: r.at.0,
            action: actions.pop().expect("exactly one"),
        });
    }
    faults.sort_by_key(|f| f.at);
    Ok(faults)
}

#[cfg(test)]
mod tests;
