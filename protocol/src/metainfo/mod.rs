//! Torrent metadata: `.torrent` files, their validated geometry, and magnet links.

mod info_hash;
mod layout;
pub mod magnet;
mod torrent;

pub use info_hash::InfoHash;
pub use layout::{
    BLOCK_SIZE, BlockRef, FileSpan, LayoutError, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH, PieceIndex,
    TorrentLayout,
};
pub use torrent::{
    CreateError, FileAttr, FileEntry, Info, MAX_COMPONENT_LEN, MAX_TORRENT_FILE_SIZE, Metainfo,
    MetainfoError, NewFile, TorrentOptions, build_torrent,
};

#[cfg(test)]
mod tests;
