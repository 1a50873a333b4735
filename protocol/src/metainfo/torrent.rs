//! [`Metainfo`]: a `.torrent` file (BEP 3) with its extensions: tracker tiers (BEP 12), private
//! torrents (BEP 27), web seeds (BEP 19) and file attributes and padding files (BEP 47).
//!
//! Parsing follows libtorrent where the file's meaning is clear (unknown keys ignored, `*.utf-8`
//! variants preferred, bad tracker entries skipped with a warning) and refuses, with a
//! [`MetainfoError`] naming the problem, anything whose meaning is unclear or unsafe: wrong types,
//! inconsistent piece hashes, impossible lengths, and file paths that could land outside the
//! download directory. The info hash is the SHA-1 of the exact bytes of `info` in the file.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::InfoHash;
use super::layout::{LayoutError, TorrentLayout};
use crate::bencode::{self, DecodeError, DecodeLimits, Dict, Value};

/// The largest `.torrent` file accepted: 64 MiB (about 3 million pieces).
pub const MAX_TORRENT_FILE_SIZE: usize = 64 * 1024 * 1024;

/// A parsed, validated `.torrent` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the exact bytes of `info` as they stand in the file.
    pub info_hash: InfoHash,
    /// The `info` dictionary.
    pub info: Info,
    /// The exact bytes of `info` (what BEP 9 serves to magnet peers).
    pub info_bytes: Vec<u8>,
    /// Tracker tiers (BEP 12): `announce-list` when it has any URL, else `announce` as one tier.
    pub trackers: Vec<Vec<String>>,
    /// Web seed URLs (BEP 19 `url-list`).
    pub web_seeds: Vec<String>,
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// What was odd but accepted, one human-readable line each.
    pub warnings: Vec<String>,
}

/// The `info` dictionary: what the info hash names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The suggested name of the file (single-file) or top folder (multi-file).
    pub name: String,
    /// Bytes per piece.
    pub piece_length: u32,
    /// The SHA-1 of each piece, in order.
    pub pieces: Vec<[u8; 20]>,
    /// The files in torrent order. For a single-file torrent, one file named `name`.
    pub files: Vec<FileEntry>,
    /// Whether this is a single-file torrent (`length` rather than `files`).
    pub single_file: bool,
    /// BEP 27: peers only from the torrent's trackers (no DHT, PEX, LSD).
    pub private: bool,
    /// The validated geometry.
    pub layout: TorrentLayout,
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Where the file lands relative to the download directory: for a multi-file torrent the first
    /// component is the torrent's name. Every component is a plain, safe name.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// BEP 47 attributes.
    pub attr: FileAttr,
}

impl FileEntry {
    /// The path joined with `/`.
    pub fn path_string(&self) -> String {
        self.path.join("/")
    }
}

/// BEP 47 file attributes (`attr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileAttr {
    /// `p`: a padding file, all zeros, never written to disk.
    pub padding: bool,
    /// `x`: executable.
    pub executable: bool,
    /// `h`: hidden.
    pub hidden: bool,
    /// `l`: a symbolic link (its target is not followed or created by bt).
    pub symlink: bool,
}

impl FileAttr {
    fn parse(attr: &[u8]) -> Self {
        FileAttr {
            padding: attr.contains(&b'p'),
            executable: attr.contains(&b'x'),
            hidden: attr.contains(&b'h'),
            symlink: attr.contains(&b'l'),
        }
    }

    fn encode(&self) -> Option<String> {
        let mut s = String::new();
        for (on, c) in [
            (self.executable, 'x'),
            (self.hidden, 'h'),
            (self.padding, 'p'),
            (self.symlink, 'l'),
        ] {
            if on {
                s.push(c);
            }
        }
        (!s.is_empty()).then_some(s)
    }
}

/// Why a `.torrent` file is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// Larger than [`MAX_TORRENT_FILE_SIZE`].
    #[error("torrent file is {0} bytes, larger than the 64 MiB bt accepts")]
    FileTooLarge(usize),
    /// The bytes are not bencode we accept.
    #[error("not a valid torrent file: {0}")]
    Bencode(DecodeError),
    /// BEP 3: a metainfo file is a bencoded dictionary.
    #[error("not a valid torrent file: the top level is a {0}, not a dictionary")]
    NotADictionary(&'static str),
    /// A key BEP 3 requires is absent.
    #[error("torrent has no `{0}`")]
    Missing(&'static str),
    /// A key holds the wrong type of value.
    #[error("`{key}` is a {found}, expected {expected}")]
    WrongType {
        /// The key, with its enclosing keys (`info.piece length`).
        key: String,
        /// What BEP 3 says it holds.
        expected: &'static str,
        /// What it holds.
        found: &'static str,
    },
    /// BEP 52 v2-only torrents (no v1 `pieces`) are not supported yet.
    #[error("BitTorrent v2-only torrents are not supported (this one has no v1 `pieces`)")]
    V2Only,
    /// BEP 3: `info` has either `length` (single file) or `files` (multi-file), not both.
    #[error("`info` has both `length` and `files`: single- or multi-file is ambiguous")]
    LengthAndFiles,
    /// BEP 3: `piece length` is a positive integer.
    #[error("piece length {0} is not positive")]
    PieceLengthNotPositive(i64),
    /// A file length below zero.
    #[error("file `{path}` has negative length {length}")]
    NegativeLength {
        /// The file.
        path: String,
        /// Its declared length.
        length: i64,
    },
    /// BEP 3: `pieces` is a concatenation of 20-byte SHA-1 hashes.
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    /// The number of piece hashes does not match the files' total length.
    #[error(
        "`pieces` holds {found} hashes but {total_length} bytes in pieces of {piece_length} need {expected}"
    )]
    PieceCountMismatch {
        /// Hashes present.
        found: usize,
        /// Hashes the geometry needs.
        expected: u64,
        /// Sum of the file lengths.
        total_length: u64,
        /// The piece length.
        piece_length: u64,
    },
    /// The geometry is impossible.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// BEP 3: a multi-file torrent lists at least one file.
    #[error("`info.files` is empty")]
    NoFiles,
    /// A file's `path` list is empty.
    #[error("file #{0} has an empty path")]
    EmptyPath(usize),
    /// A path component that could escape the download directory or is not a plain name.
    #[error("file path `{path}` has an unsafe component {component:?}: {why}")]
    UnsafePath {
        /// The whole path as given (lossy UTF-8).
        path: String,
        /// The offending component.
        component: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// Two files land on the same path.
    #[error("two files have the same path `{0}`")]
    DuplicatePath(String),
    /// A path is used both as a file and as a folder of other files.
    #[error("`{0}` is both a file and a folder")]
    FileIsFolder(String),
}

// By hand rather than `#[from]`, so the decode error is part of the message and not repeated as a
// source in error chains.
impl From<DecodeError> for MetainfoError {
    fn from(e: DecodeError) -> Self {
        MetainfoError::Bencode(e)
    }
}

fn wrong_type(key: &str, expected: &'static str, found: &Value<'_>) -> MetainfoError {
    MetainfoError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.kind(),
    }
}

/// Text from a byte string, lossily, noting a warning when it was not UTF-8.
fn text(bytes: &[u8], what: &str, warnings: &mut Vec<String>) -> String {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => {
            warnings.push(format!("{what} is not valid UTF-8; shown as `{s}`"));
            s
        }
    }
}

/// `key.utf-8` if present and a string, else `key`.
fn utf8_variant<'d, 'a>(dict: &'d Dict<'a>, key: &str) -> Option<&'d Value<'a>> {
    let utf8_key = format!("{key}.utf-8");
    dict.get(utf8_key.as_bytes())
        .filter(|v| v.as_bytes().is_some() || v.as_list().is_some())
        .or_else(|| dict.get(key.as_bytes()))
}

fn optional_text(dict: &Dict<'_>, key: &str, warnings: &mut Vec<String>) -> Option<String> {
    match utf8_variant(dict, key)? {
        Value::Bytes(b) if !b.is_empty() => Some(text(b, &format!("`{key}`"), warnings)),
        Value::Bytes(_) => None,
        other => {
            warnings.push(format!("`{key}` is a {} and is ignored", other.kind()));
            None
        }
    }
}

/// The longest file or folder name accepted, in bytes: `NAME_MAX` of Linux file systems (ext4,
/// XFS, btrfs, tmpfs). A longer name could not be created, and would fail only at the first write.
pub const MAX_COMPONENT_LEN: usize = 255;

/// Checks one path component; `path` is for the message.
fn check_component(component: &str, path: &str) -> Result<(), MetainfoError> {
    let why = if component.is_empty() {
        Some("empty")
    } else if component == "." || component == ".." {
        Some("refers to a folder by `.` or `..`")
    } else if component.contains('/') || component.contains('\\') {
        Some("contains a path separator")
    } else if component.contains('\0') {
        Some("contains a NUL byte")
    } else if component.len() > MAX_COMPONENT_LEN {
        Some("is longer than 255 bytes, more than file systems allow in a name")
    } else {
        None
    };
    match why {
        Some(why) => Err(MetainfoError::UnsafePath {
            path: path.to_owned(),
            component: component.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

impl Metainfo {
    /// Parses and validates a `.torrent` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::FileTooLarge(bytes.len()));
        }
        let decoded = bencode::decode(bytes, DecodeLimits::default())?;
        let mut warnings: Vec<String> = decoded.warnings.iter().map(|w| w.to_string()).collect();
        let root = match &decoded.value {
            Value::Dict(d) => d,
            other => return Err(MetainfoError::NotADictionary(other.kind())),
        };
        let info_value = root.get(b"info").ok_or(MetainfoError::Missing("info"))?;
        let info_dict = info_value
            .as_dict()
            .ok_or_else(|| wrong_type("info", "a dictionary", info_value))?;
        let info_bytes = info_dict
            .raw()
            .expect("a decoded dictionary keeps its raw bytes");
        let info = parse_info(info_dict, &mut warnings)?;

        Ok(Metainfo {
            info_hash: InfoHash::of_info_bytes(info_bytes),
            info,
            info_bytes: info_bytes.to_vec(),
            trackers: parse_trackers(root, &mut warnings),
            web_seeds: parse_web_seeds(root, &mut warnings),
            creation_date: match root.get(b"creation date") {
                Some(Value::Int(n)) => Some(*n),
                Some(other) => {
                    warnings.push(format!(
                        "`creation date` is a {} and is ignored",
                        other.kind()
                    ));
                    None
                }
                None => None,
            },
            comment: optional_text(root, "comment", &mut warnings),
            created_by: optional_text(root, "created by", &mut warnings),
            warnings,
        })
    }

    /// A metainfo made of an info dictionary alone (the bytes a magnet link's peers sent, BEP 9):
    /// validated exactly as the `info` of a `.torrent` file (paths, lengths, piece hashes), with
    /// the info hash computed from `bytes`; no trackers, web seeds or other top-level keys.
    pub fn from_info_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let mut warnings = Vec::new();
        let info = Info::parse_bytes(bytes, &mut warnings)?;
        Ok(Metainfo {
            info_hash: InfoHash::of_info_bytes(bytes),
            info,
            info_bytes: bytes.to_vec(),
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            creation_date: None,
            comment: None,
            created_by: None,
            warnings,
        })
    }

    /// Every tracker URL, tier by tier.
    pub fn tracker_urls(&self) -> impl Iterator<Item = &str> {
        self.trackers.iter().flatten().map(String::as_str)
    }
}

impl Info {
    /// Parses and validates a bencoded info dictionary on its own (BEP 9 metadata), with the same
    /// checks as the `info` of a `.torrent` file. At most [`MAX_TORRENT_FILE_SIZE`] bytes.
    pub fn from_info_bytes(bytes: &[u8]) -> Result<Info, MetainfoError> {
        Info::parse_bytes(bytes, &mut Vec::new())
    }

    fn parse_bytes(bytes: &[u8], warnings: &mut Vec<String>) -> Result<Info, MetainfoError> {
        if bytes.len() > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::FileTooLarge(bytes.len()));
        }
        let decoded = bencode::decode(bytes, DecodeLimits::default())?;
        warnings.extend(decoded.warnings.iter().map(|w| w.to_string()));
        let dict = decoded
            .value
            .as_dict()
            .ok_or_else(|| wrong_type("info", "a dictionary", &decoded.value))?;
        parse_info(dict, warnings)
    }
}

fn parse_info(info: &Dict<'_>, warnings: &mut Vec<String>) -> Result<Info, MetainfoError> {
    let name = match utf8_variant(info, "name") {
        Some(Value::Bytes(b)) => text(b, "the torrent name", warnings),
        Some(other) => return Err(wrong_type("info.name", "a byte string", other)),
        None => return Err(MetainfoError::Missing("info.name")),
    };
    check_component(&name, &name)?;

    let piece_length = match info.get(b"piece length") {
        Some(Value::Int(n)) if *n > 0 => *n as u64,
        Some(Value::Int(n)) => return Err(MetainfoError::PieceLengthNotPositive(*n)),
        Some(other) => return Err(wrong_type("info.piece length", "an integer", other)),
        None => return Err(MetainfoError::Missing("info.piece length")),
    };

    let pieces = match info.get(b"pieces") {
        Some(Value::Bytes(b)) => b,
        Some(other) => return Err(wrong_type("info.pieces", "a byte string", other)),
        None if info.get(b"file tree").is_some() => return Err(MetainfoError::V2Only),
        None => return Err(MetainfoError::Missing("info.pieces")),
    };
    if pieces.len() % 20 != 0 {
        return Err(MetainfoError::PiecesNotMultipleOf20(pieces.len()));
    }

    let (files, single_file) = match (info.get(b"length"), info.get(b"files")) {
        (Some(_), Some(_)) => return Err(MetainfoError::LengthAndFiles),
        (Some(Value::Int(n)), None) => {
            if *n < 0 {
                return Err(MetainfoError::NegativeLength {
                    path: name,
                    length: *n,
                });
            }
            let attr = match info.get(b"attr") {
                Some(Value::Bytes(a)) => FileAttr::parse(a),
                _ => FileAttr::default(),
            };
            let file = FileEntry {
                path: vec![name.clone()],
                length: *n as u64,
                attr,
            };
            (vec![file], true)
        }
        (Some(other), None) => return Err(wrong_type("info.length", "an integer", other)),
        (None, Some(Value::List(list))) => (parse_files(&name, list, warnings)?, false),
        (None, Some(other)) => return Err(wrong_type("info.files", "a list", other)),
        (None, None) => return Err(MetainfoError::Missing("info.length` or `info.files")),
    };

    let private = match info.get(b"private") {
        Some(Value::Int(n)) => *n != 0,
        Some(other) => {
            warnings.push(format!(
                "`info.private` is a {} and is ignored",
                other.kind()
            ));
            false
        }
        None => false,
    };

    let lengths: Vec<u64> = files.iter().map(|f| f.length).collect();
    let layout = TorrentLayout::new(piece_length, &lengths)?;
    let found = pieces.len() / 20;
    if found as u64 != u64::from(layout.piece_count()) {
        return Err(MetainfoError::PieceCountMismatch {
            found,
            expected: u64::from(layout.piece_count()),
            total_length: layout.total_length(),
            piece_length,
        });
    }
    let pieces = pieces
        .chunks_exact(20)
        .map(|c| c.try_into().expect("chunks_exact gives 20 bytes"))
        .collect();

    Ok(Info {
        name,
        piece_length: layout.piece_length(),
        pieces,
        files,
        single_file,
        private,
        layout,
    })
}

fn parse_files(
    name: &str,
    list: &[Value<'_>],
    warnings: &mut Vec<String>,
) -> Result<Vec<FileEntry>, MetainfoError> {
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut files = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let key = format!("info.files[{index}]");
        let dict = entry
            .as_dict()
            .ok_or_else(|| wrong_type(&key, "a dictionary", entry))?;
        let components = match utf8_variant(dict, "path") {
            Some(Value::List(c)) => c,
            Some(other) => return Err(wrong_type(&format!("{key}.path"), "a list", other)),
            None => return Err(MetainfoError::Missing("info.files[].path")),
        };
        if components.is_empty() {
            return Err(MetainfoError::EmptyPath(index));
        }
        let mut path = Vec::with_capacity(components.len() + 1);
        path.push(name.to_owned());
        for c in components {
            let bytes = c
                .as_bytes()
                .ok_or_else(|| wrong_type(&format!("{key}.path[]"), "a byte string", c))?;
            path.push(text(
                bytes,
                &format!("a component of file #{index}'s path"),
                warnings,
            ));
        }
        let shown = path.join("/");
        for c in &path[1..] {
            check_component(c, &shown)?;
        }
        let length = match dict.get(b"length") {
            Some(Value::Int(n)) if *n >= 0 => *n as u64,
            Some(Value::Int(n)) => {
                return Err(MetainfoError::NegativeLength {
                    path: shown,
                    length: *n,
                });
            }
            Some(other) => return Err(wrong_type(&format!("{key}.length"), "an integer", other)),
            None => return Err(MetainfoError::Missing("info.files[].length")),
        };
        let attr = match dict.get(b"attr") {
            Some(Value::Bytes(a)) => FileAttr::parse(a),
            _ => FileAttr::default(),
        };
        files.push(FileEntry { path, length, attr });
    }
    check_paths_distinct(&files)?;
    Ok(files)
}

/// Refuses two real files on one path, and a path that is both a file and a folder. Padding files
/// (BEP 47) never reach the disk, so they may share names (libtorrent names them `.pad/SIZE`).
fn check_paths_distinct(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut file_paths: BTreeSet<&[String]> = BTreeSet::new();
    let mut folders: BTreeSet<&[String]> = BTreeSet::new();
    for f in files.iter().filter(|f| !f.attr.padding) {
        if !file_paths.insert(&f.path) {
            return Err(MetainfoError::DuplicatePath(f.path_string()));
        }
        for end in 1..f.path.len() {
            folders.insert(&f.path[..end]);
        }
    }
    if let Some(clash) = file_paths.intersection(&folders).next() {
        return Err(MetainfoError::FileIsFolder(clash.join("/")));
    }
    Ok(())
}

fn parse_trackers(root: &Dict<'_>, warnings: &mut Vec<String>) -> Vec<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut url = |v: &Value<'_>, warnings: &mut Vec<String>| -> Option<String> {
        let Some(b) = v.as_bytes() else {
            warnings.push(format!("a tracker entry is a {} and is ignored", v.kind()));
            return None;
        };
        let u = String::from_utf8_lossy(b).trim().to_owned();
        (!u.is_empty() && seen.insert(u.clone())).then_some(u)
    };
    let mut tiers = Vec::new();
    match root.get(b"announce-list") {
        Some(Value::List(list)) => {
            for tier in list {
                let urls: Vec<String> = match tier {
                    Value::List(entries) => {
                        entries.iter().filter_map(|e| url(e, warnings)).collect()
                    }
                    // Some creators write a flat list of URLs: each is then a tier of its own.
                    Value::Bytes(_) => url(tier, warnings).into_iter().collect(),
                    other => {
                        warnings.push(format!(
                            "an `announce-list` tier is a {} and is ignored",
                            other.kind()
                        ));
                        Vec::new()
                    }
                };
                if !urls.is_empty() {
                    tiers.push(urls);
                }
            }
        }
        Some(other) => warnings.push(format!(
            "`announce-list` is a {} and is ignored",
            other.kind()
        )),
        None => {}
    }
    // BEP 12: a client that understands announce-list ignores announce when the list has URLs.
    if tiers.is_empty()
        && let Some(u) = root.get(b"announce").and_then(|v| url(v, warnings))
    {
        tiers.push(vec![u]);
    }
    tiers
}

fn parse_web_seeds(root: &Dict<'_>, warnings: &mut Vec<String>) -> Vec<String> {
    let one = |v: &Value<'_>| {
        v.as_bytes()
            .map(|b| String::from_utf8_lossy(b).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    match root.get(b"url-list") {
        None => Vec::new(),
        Some(Value::List(list)) => list.iter().filter_map(one).collect(),
        Some(v @ Value::Bytes(_)) => one(v).into_iter().collect(),
        Some(other) => {
            warnings.push(format!("`url-list` is a {} and is ignored", other.kind()));
            Vec::new()
        }
    }
}

/// What `bt create` puts in a new torrent besides the hashed data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TorrentOptions {
    /// Tracker tiers; `announce` is the first URL, `announce-list` is written when there is more
    /// than one URL.
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 web seeds.
    pub web_seeds: Vec<String>,
    /// BEP 27 private flag.
    pub private: bool,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch; `None` keeps the output reproducible.
    pub creation_date: Option<i64>,
}

/// A file to put in a new torrent: its path below the torrent's root and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFile {
    /// Path components below the torrent's root folder (empty for a single-file torrent).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
}

/// Why a new torrent could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The piece hashes do not match the geometry.
    #[error(transparent)]
    Invalid(#[from] MetainfoError),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] bencode::EncodeError),
}

/// Builds the bytes of a new `.torrent`: canonical bencode, so the same input always gives the same
/// bytes. `files` is one file with an empty path for a single-file torrent. The result is parsed
/// back and validated before it is returned.
pub fn build_torrent(
    name: &str,
    piece_length: u32,
    files: &[NewFile],
    pieces: &[[u8; 20]],
    options: &TorrentOptions,
) -> Result<(Vec<u8>, Metainfo), CreateError> {
    let mut info = Dict::new();
    info.insert(&b"name"[..], Value::string(name));
    info.insert(&b"piece length"[..], Value::Int(i64::from(piece_length)));
    info.insert(&b"pieces"[..], Value::owned_bytes(pieces.concat()));
    if options.private {
        info.insert(&b"private"[..], Value::Int(1));
    }
    match files {
        [single] if single.path.is_empty() => {
            info.insert(&b"length"[..], Value::Int(single.length as i64));
        }
        _ => {
            let list = files
                .iter()
                .map(|f| {
                    let mut d = Dict::new();
                    d.insert(&b"length"[..], Value::Int(f.length as i64));
                    d.insert(
                        &b"path"[..],
                        Value::List(f.path.iter().map(|c| Value::string(c.as_str())).collect()),
                    );
                    Value::Dict(d)
                })
                .collect();
            info.insert(&b"files"[..], Value::List(list));
        }
    }

    let mut root = Dict::new();
    root.insert(&b"info"[..], Value::Dict(info));
    let mut urls = options.trackers.iter().flatten();
    if let Some(first) = urls.next() {
        root.insert(&b"announce"[..], Value::string(first.as_str()));
        if urls.next().is_some() {
            let tiers = options
                .trackers
                .iter()
                .filter(|t| !t.is_empty())
                .map(|t| Value::List(t.iter().map(|u| Value::string(u.as_str())).collect()))
                .collect();
            root.insert(&b"announce-list"[..], Value::List(tiers));
        }
    }
    match options.web_seeds.as_slice() {
        [] => {}
        [one] => {
            root.insert(&b"url-list"[..], Value::string(one.as_str()));
        }
        many => {
            root.insert(
                &b"url-list"[..],
                Value::List(many.iter().map(|u| Value::string(u.as_str())).collect()),
            );
        }
    }
    if let Some(c) = &options.comment {
        root.insert(&b"comment"[..], Value::string(c.as_str()));
    }
    if let Some(c) = &options.created_by {
        root.insert(&b"created by"[..], Value::string(c.as_str()));
    }
    if let Some(d) = options.creation_date {
        root.insert(&b"creation date"[..], Value::Int(d));
    }
    let bytes = bencode::encode(&Value::Dict(root))?;
    let meta = Metainfo::from_bytes(&bytes)?;
    Ok((bytes, meta))
}

impl FileEntry {
    /// The BEP 47 `attr` string of this file, if it has any attribute.
    pub fn attr_string(&self) -> Option<String> {
        self.attr.encode()
    }
}
