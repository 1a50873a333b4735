//! Generated torrents: content that is a pure function of a seed and the byte offset, and the one
//! torrent that describes it. The protocol's harness, the runtime's in-memory storage and both of
//! the simulator's engines take their bytes and their info dictionary from here, so the same seed
//! and [`ContentSpec`] give the same bytes, the same piece hashes and the same info hash
//! everywhere.
//!
//! Byte `i` under `seed` is byte `i % 8` (little-endian) of SplitMix64's output for word `i / 8`:
//! cheap (one mix per 8 bytes, [`fill`]), different per position and per seed, and any range can
//! be made without the bytes before it.
//!
//! The info dictionary ([`torrent`]) is [`build_torrent`]'s canonical bencode: the spec's name,
//! its piece length, one file with no path for a single-file torrent, otherwise files
//! `file0.bin`, `file1.bin`, ... in order; no `private` flag, no trackers. Its SHA-1 is the info
//! hash, so a magnet peer can check the metadata it is sent.

use sha1::{Digest, Sha1};

use crate::metainfo::{
    CreateError, Metainfo, NewFile, TorrentLayout, TorrentOptions, build_torrent,
};

/// What a generated torrent is made of: its name, piece length and file lengths. The bytes are
/// chosen by the seed given with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentSpec {
    /// The torrent's `name` (the file's, or the top folder's for several files).
    pub name: String,
    /// Bytes per piece.
    pub piece_length: u32,
    /// Each file's length in bytes, in torrent order.
    pub files: Vec<u64>,
}

impl ContentSpec {
    /// A single-file torrent named `name` of `total` bytes in `piece_length` pieces.
    pub fn single(name: &str, piece_length: u32, total: u64) -> Self {
        ContentSpec {
            name: name.to_owned(),
            piece_length,
            files: vec![total],
        }
    }

    /// The validated geometry, or why the spec describes no torrent.
    pub fn layout(&self) -> Result<TorrentLayout, CreateError> {
        Ok(
            TorrentLayout::new(u64::from(self.piece_length), &self.files)
                .map_err(crate::metainfo::MetainfoError::from)?,
        )
    }
}

/// SplitMix64's output for word `index` under `seed`.
#[inline]
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Byte `offset` of the content generated from `seed`.
pub fn byte(seed: u64, offset: u64) -> u8 {
    word(seed, offset / 8).to_le_bytes()[(offset % 8) as usize]
}

/// Fills `out` with the content generated from `seed` from byte `offset` on: the bytes
/// [`byte`] gives, a word at a time.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let skip = (offset % 8) as usize;
    let mut index = offset / 8;
    let mut rest = out;
    if skip != 0 {
        let n = (8 - skip).min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&word(seed, index).to_le_bytes()[skip..skip + n]);
        rest = tail;
        index += 1;
    }
    let mut chunks = rest.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word(seed, index).to_le_bytes());
        index += 1;
    }
    let tail = chunks.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&word(seed, index).to_le_bytes()[..n]);
}

/// `len` bytes of the content generated from `seed`, from byte `offset` on.
pub fn bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    fill(seed, offset, &mut out);
    out
}

/// The SHA-1 of every piece of `layout` holding the content generated from `seed`. Holds one
/// piece in memory at a time.
pub fn piece_hashes(seed: u64, layout: &TorrentLayout) -> Vec<[u8; 20]> {
    let mut buf = vec![0u8; layout.piece_length() as usize];
    layout
        .pieces()
        .map(|p| {
            let piece = &mut buf[..layout.piece_len(p) as usize];
            fill(seed, layout.piece_offset(p), piece);
            Sha1::digest(piece).into()
        })
        .collect()
}

/// The path of file `index` of a torrent of `count` files (see the module docs).
fn file_path(index: usize, count: usize) -> Vec<String> {
    if count == 1 {
        Vec::new()
    } else {
        vec![format!("file{index}.bin")]
    }
}

/// The torrent of `spec` with the content generated from `seed`: its info dictionary, info hash,
/// geometry and piece hashes (see the module docs). Fails when no torrent can describe the spec
/// (no files, a piece length out of bounds, an info dictionary over the protocol's bound).
pub fn torrent(seed: u64, spec: &ContentSpec) -> Result<Metainfo, CreateError> {
    let layout = spec.layout()?;
    let files: Vec<NewFile> = spec
        .files
        .iter()
        .enumerate()
        .map(|(i, &length)| NewFile {
            path: file_path(i, spec.files.len()),
            length,
        })
        .collect();
    let (_, meta) = build_torrent(
        &spec.name,
        spec.piece_length,
        &files,
        &piece_hashes(seed, &layout),
        &TorrentOptions::default(),
    )?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::InfoHash;

    #[test]
    fn fill_gives_the_bytes_of_byte_at_any_offset_and_length() {
        // Proves the word-at-a-time fill equals the byte-at-a-time definition, unaligned starts
        // and ends, empty and sub-word lengths included.
        for offset in [0u64, 1, 7, 8, 13, 1 << 20] {
            for len in [0usize, 1, 3, 8, 9, 37] {
                let out = bytes(5, offset, len);
                let each: Vec<u8> = (0..len as u64).map(|i| byte(5, offset + i)).collect();
                assert_eq!(out, each, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn content_depends_on_seed_and_position() {
        // Proves another seed gives other bytes, and seed 0 does not start with a run of zeros
        // (SplitMix64 of 0 would, without the counter offset).
        assert_ne!(bytes(1, 0, 64), bytes(2, 0, 64));
        assert_ne!(bytes(0, 0, 8), vec![0; 8]);
        assert_ne!(bytes(0, 0, 8), bytes(0, 8, 8));
    }

    #[test]
    fn the_torrent_is_a_real_info_dictionary_of_the_generated_bytes() {
        // Proves the info hash is the SHA-1 of the info bytes, the dictionary parses back with the
        // spec's geometry, each piece hash is the SHA-1 of that piece's generated bytes (short last
        // piece included), and the seed, the name and the file list all change the info hash.
        let spec = ContentSpec::single("x", 32_768, 100_000);
        let meta = torrent(4, &spec).unwrap();
        assert_eq!(meta.info_hash, InfoHash::of_info_bytes(&meta.info_bytes));
        let parsed =
            Metainfo::from_bytes(&[&b"d4:info"[..], &meta.info_bytes, b"e"].concat()).unwrap();
        assert_eq!(parsed.info_hash, meta.info_hash);
        assert_eq!(parsed.info.layout, spec.layout().unwrap());
        let last = meta.info.layout.last_piece();
        let start = meta.info.layout.piece_offset(last);
        let expected: [u8; 20] = Sha1::digest(bytes(4, start, 100_000 - start as usize)).into();
        assert_eq!(meta.info.pieces[last.as_usize()], expected);
        assert_eq!(meta.info.pieces.len(), 4);
        assert_ne!(torrent(5, &spec).unwrap().info_hash, meta.info_hash);
        let renamed = ContentSpec::single("y", 32_768, 100_000);
        assert_ne!(torrent(4, &renamed).unwrap().info_hash, meta.info_hash);
        let two = ContentSpec {
            files: vec![40_000, 60_000],
            ..spec.clone()
        };
        let multi = torrent(4, &two).unwrap();
        assert_ne!(multi.info_hash, meta.info_hash);
        assert_eq!(
            multi.info.pieces, meta.info.pieces,
            "same bytes, same pieces"
        );
        assert!(
            torrent(
                4,
                &ContentSpec {
                    files: vec![],
                    ..spec
                }
            )
            .is_err()
        );
    }
}
