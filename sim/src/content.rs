//! The torrent's content, generated from the seed: no files, and every byte checkable.
//!
//! The bytes, piece hashes and info dictionary are the protocol's generated torrent
//! ([`bt_protocol::content`]) for the scenario's [`TorrentSpec::content_spec`] and the run's seed:
//! the same torrent, and so the same info hash, as the turmoil engine builds. [`Content`] makes the
//! whole torrent once and serves blocks as `Bytes` slices of that one buffer, so a block read
//! costs no copy whatever the number of peers. A corrupt peer serves slices of a second buffer
//! with every bit flipped, made the first time one is asked for.
//!
//! [`Disk`] is what one peer holds. It does not keep bytes: a written block is compared with the
//! content at once and only "this block is right" is kept, one bit per block. That is exactly the
//! information a real disk holds for the questions the simulator asks (a SHA-1 over the stored
//! piece equals the piece's hash exactly when every block of it is right, barring a SHA-1
//! collision), and it lets 10,000 peers share a 64 MiB torrent in 80 MB.

use std::sync::OnceLock;

use bt_protocol::metainfo::{BLOCK_SIZE, BlockRef, InfoHash, PieceIndex, TorrentLayout};
use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::scenario::TorrentSpec;

/// The torrent: geometry, piece hashes, and its bytes. See the module docs.
#[derive(Debug)]
pub struct Content {
    /// The geometry.
    pub layout: TorrentLayout,
    /// The info hash peers use: the SHA-1 of [`Content::info_bytes`].
    pub info_hash: InfoHash,
    /// The bencoded info dictionary ([`bt_protocol::content::torrent`]): what a seeder serves to
    /// magnet peers (BEP 9).
    pub info_bytes: Bytes,
    /// SHA-1 of each piece.
    pub piece_hashes: Vec<[u8; 20]>,
    bytes: Bytes,
    corrupt: OnceLock<Bytes>,
    blocks_per_piece: u32,
    block_count: usize,
}

impl Content {
    /// Generates the content of `spec` from `seed`, hashes its pieces and builds its info
    /// dictionary; fails only when no torrent can describe it (an info dictionary over the
    /// protocol's 64 MiB bound: millions of pieces).
    pub fn generate(seed: u64, spec: &TorrentSpec) -> Result<Content, String> {
        let meta = bt_protocol::content::torrent(seed, &spec.content_spec()?)
            .map_err(|e| format!("cannot build the torrent's info dictionary: {e}"))?;
        let layout = meta.info.layout;
        let total = layout.total_length();
        let data = bt_protocol::content::bytes(
            seed,
            0,
            usize::try_from(total).expect("the scenario caps the size"),
        );
        let blocks_per_piece = layout.piece_length().div_ceil(BLOCK_SIZE);
        let block_count = layout
            .pieces()
            .map(|p| layout.block_count(p) as usize)
            .sum::<usize>();
        let last_piece_blocks = layout.block_count(layout.last_piece()) as usize;
        debug_assert_eq!(
            block_count,
            (layout.piece_count() as usize - 1) * blocks_per_piece as usize + last_piece_blocks
        );
        Ok(Content {
            layout,
            info_hash: meta.info_hash,
            info_bytes: Bytes::from(meta.info_bytes),
            piece_hashes: meta.info.pieces,
            bytes: Bytes::from(data),
            corrupt: OnceLock::new(),
            blocks_per_piece,
            block_count,
        })
    }

    /// The size of [`Content::info_bytes`], as a peer advertises it (BEP 9 `metadata_size`).
    pub fn metadata_size(&self) -> u32 {
        u32::try_from(self.info_bytes.len()).expect("build_torrent bounds the info dictionary")
    }

    /// The whole content.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Blocks in the torrent.
    pub fn block_count(&self) -> usize {
        self.block_count
    }

    /// The torrent-wide number of `block`.
    pub fn block_index(&self, block: BlockRef) -> usize {
        block.piece.as_usize() * self.blocks_per_piece as usize
            + (block.offset / BLOCK_SIZE) as usize
    }

    /// Torrent-wide numbers of `piece`'s blocks.
    pub fn piece_blocks(&self, piece: PieceIndex) -> std::ops::Range<usize> {
        let first = piece.as_usize() * self.blocks_per_piece as usize;
        first..first + self.layout.block_count(piece) as usize
    }

    fn range(&self, block: BlockRef) -> std::ops::Range<usize> {
        let start = (self.layout.piece_offset(block.piece) + u64::from(block.offset)) as usize;
        start..start + block.len as usize
    }

    /// Whether `data` is exactly `block`'s content.
    pub fn matches(&self, block: BlockRef, data: &[u8]) -> bool {
        self.bytes[self.range(block)] == *data
    }

    /// `block` as a peer serves it: the content, or with `corrupt` every bit flipped.
    pub fn block(&self, block: BlockRef, corrupt: bool) -> Bytes {
        let range = self.range(block);
        if corrupt {
            self.corrupt
                .get_or_init(|| Bytes::from(self.bytes.iter().map(|b| !b).collect::<Vec<u8>>()))
                .slice(range)
        } else {
            self.bytes.slice(range)
        }
    }
}

/// One peer's disk: for each block, whether it holds the right bytes. See the module docs.
#[derive(Clone, Debug)]
pub struct Disk {
    good: Vec<u64>,
}

impl Disk {
    /// A disk holding nothing right.
    pub fn empty(content: &Content) -> Disk {
        Disk {
            good: vec![0; content.block_count().div_ceil(64)],
        }
    }

    /// A disk holding the whole torrent.
    pub fn full(content: &Content) -> Disk {
        let mut disk = Disk::empty(content);
        for i in 0..content.block_count() {
            disk.set(i, true);
        }
        disk
    }

    fn set(&mut self, block: usize, good: bool) {
        let (word, bit) = (block / 64, block % 64);
        if good {
            self.good[word] |= 1 << bit;
        } else {
            self.good[word] &= !(1 << bit);
        }
    }

    fn get(&self, block: usize) -> bool {
        self.good[block / 64] & (1 << (block % 64)) != 0
    }

    /// Stores `data` as `block`; returns whether it was the right content.
    pub fn write(&mut self, content: &Content, block: BlockRef, data: &[u8]) -> bool {
        let good = content.matches(block, data);
        self.set(content.block_index(block), good);
        good
    }

    /// Whether every block of `piece` holds the right bytes.
    pub fn piece_is_good(&self, content: &Content, piece: PieceIndex) -> bool {
        content.piece_blocks(piece).all(|b| self.get(b))
    }

    /// Whether `block` holds the right bytes.
    pub fn block_is_good(&self, content: &Content, block: BlockRef) -> bool {
        self.get(content.block_index(block))
    }

    /// The SHA-1 of `block` as stored: of the generated bytes when it holds the right ones,
    /// otherwise of those bytes with every bit flipped (the only wrong data the simulator's
    /// peers send).
    pub fn block_hash(&self, content: &Content, block: BlockRef) -> [u8; 20] {
        let corrupt = !self.block_is_good(content, block);
        Sha1::digest(content.block(block, corrupt)).into()
    }

    /// The SHA-1 of `piece` as stored: the piece's hash when every block is right, otherwise a
    /// digest that differs from it (what SHA-1 over wrong bytes gives, barring a collision).
    pub fn hash(&self, content: &Content, piece: PieceIndex) -> [u8; 20] {
        let mut digest = content.piece_hashes[piece.as_usize()];
        if !self.piece_is_good(content, piece) {
            digest[0] ^= 0xff;
        }
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u64, piece: u64) -> TorrentSpec {
        TorrentSpec {
            piece_length: piece,
            files: vec![size],
        }
    }

    #[test]
    fn content_depends_on_seed_and_hashes_match() {
        // Proves two seeds give different content and info hashes, and each piece hash is the
        // SHA-1 of that piece's generated bytes (short last piece included).
        let a = Content::generate(1, &spec(100_000, 32_768)).unwrap();
        let b = Content::generate(2, &spec(100_000, 32_768)).unwrap();
        assert_ne!(a.bytes(), b.bytes());
        assert_ne!(a.info_hash, b.info_hash);
        let last = a.layout.last_piece();
        let start = a.layout.piece_offset(last) as usize;
        let expected: [u8; 20] = Sha1::digest(&a.bytes()[start..]).into();
        assert_eq!(a.piece_hashes[last.as_usize()], expected);
        assert_eq!(a.block_count(), 7);
    }

    #[test]
    fn the_info_hash_is_the_sha1_of_a_real_info_dictionary() {
        // Proves magnet peers can check the metadata: the info bytes parse as an info dictionary
        // with the content's geometry and piece hashes, and hash to the info hash.
        let c = Content::generate(4, &spec(100_000, 32_768)).unwrap();
        assert_eq!(c.info_hash, InfoHash::of_info_bytes(&c.info_bytes));
        let meta = bt_protocol::metainfo::Metainfo::from_bytes(
            &[&b"d4:info"[..], &c.info_bytes, b"e"].concat(),
        )
        .unwrap();
        assert_eq!(meta.info_hash, c.info_hash);
        assert_eq!(meta.info.pieces, c.piece_hashes);
        assert_eq!(meta.info.layout, c.layout);
        assert_eq!(c.metadata_size() as usize, c.info_bytes.len());
        let multi = TorrentSpec {
            piece_length: 32_768,
            files: vec![40_000, 60_000],
        };
        let m = Content::generate(4, &multi).unwrap();
        assert_ne!(
            m.info_hash, c.info_hash,
            "the file list is in the dictionary"
        );
    }

    #[test]
    fn a_disk_knows_which_pieces_are_right() {
        // Proves a piece hashes right only when every block was written with the right bytes,
        // and a corrupt block turns it wrong again.
        let c = Content::generate(3, &spec(65_536, 32_768)).unwrap();
        let mut disk = Disk::empty(&c);
        let p0 = c.layout.piece(0).unwrap();
        let blocks: Vec<BlockRef> = c.layout.blocks(p0).collect();
        assert!(disk.write(&c, blocks[0], &c.block(blocks[0], false)));
        assert_ne!(disk.hash(&c, p0), c.piece_hashes[0]);
        assert!(disk.write(&c, blocks[1], &c.block(blocks[1], false)));
        assert_eq!(disk.hash(&c, p0), c.piece_hashes[0]);
        assert!(!disk.write(&c, blocks[1], &c.block(blocks[1], true)));
        assert!(!disk.piece_is_good(&c, p0));
        assert!(Disk::full(&c).piece_is_good(&c, c.layout.piece(1).unwrap()));
    }
}
