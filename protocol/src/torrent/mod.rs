//! One torrent's state: which pieces we and our peers have, which blocks to ask for next, and (to
//! come with issue 3) the choker and the `Torrent` state machine.

mod bitfield;
mod choker;
mod picker;

pub use bitfield::{Bitfield, BitfieldError};
pub use choker::{Choker, ChokerConfig, PeerSnapshot, Unchoked};
pub use picker::{Picker, Received, Strategy};
