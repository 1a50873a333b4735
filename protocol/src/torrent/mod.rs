//! One torrent's state: which pieces we and our peers have ([`Bitfield`]), which blocks to ask for
//! next ([`Picker`]), whom to upload to ([`Choker`]), and the [`Torrent`] state machine that
//! drives them.

mod bitfield;
mod choker;
mod deadlines;
mod machine;
mod picker;
mod smart_ban;

pub use bitfield::{Bitfield, BitfieldError};
pub use choker::{Choker, ChokerConfig, PeerSnapshot, Unchoked};
pub use deadlines::{
    Deadlines, LATE_GRACE, MAX_READERS, MAX_WINDOW_PIECES, MIN_WINDOW_PIECES, READAHEAD,
    ReadPosition, ReaderId, TooManyReaders, UNPACED_URGENT_PIECES, URGENT_HORIZON, Urgent,
};
pub use machine::{
    AddPeerError, CloseReason, ExtensionStats, FilePrioritiesError, METADATA_REJECT_SLACK,
    METADATA_REQUESTS_PER_PEER, OUR_UT_METADATA, OUR_UT_PEX, PEX_MAX_PER_MESSAGE, ReaderError,
    Torrent, TorrentConfig, TorrentEvent, TorrentOutput, TorrentStats, UNPACED_MIN_RATE,
    WriteStall, piece_priorities,
};
pub use picker::{
    ENDGAME_MAX_BLOCKS, FilePriority, MAX_ENDGAME_REQUESTS, Picker, Received, Strategy,
    URGENT_BLOCKS_PER_PEER,
};
pub use smart_ban::{MAX_RECORDED_BLOCKS, MAX_SENDERS_PER_BLOCK};

#[cfg(test)]
mod disk_full_tests;
#[cfg(test)]
mod duplicate_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod machine_tests;
#[cfg(test)]
mod magnet_tests;
#[cfg(test)]
mod pex_tests;
#[cfg(test)]
mod priority_tests;
#[cfg(test)]
mod smart_ban_tests;
