//! One torrent's state: which pieces we and our peers have ([`Bitfield`]), which blocks to ask for
//! next ([`Picker`]), whom to upload to ([`Choker`]), and (to come with issue 3) the `Torrent`
//! state machine that drives them.

mod bitfield;
mod choker;
mod picker;

pub use bitfield::{Bitfield, BitfieldError};
pub use choker::{Choker, ChokerConfig, PeerSnapshot, Unchoked};
pub use picker::{Picker, Received, Strategy};
