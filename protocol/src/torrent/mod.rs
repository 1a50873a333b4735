//! One torrent's state: which pieces we and our peers have, and (coming with issue 3) the piece
//! picker, the choker and the `Torrent` state machine.

mod bitfield;

pub use bitfield::{Bitfield, BitfieldError};
