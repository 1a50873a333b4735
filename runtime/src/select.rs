//! Choosing which files of a torrent to download: `bt get --select LIST` and `--only GLOB`, and
//! a magnet link's `so=` (BEP 53), turned into one [`FilePriority`] per file.
//!
//! - `--select` takes file indices as `bt info` prints them (the index in the torrent's file list,
//!   padding files included), separated by commas, with inclusive ranges: `0,2-4`; `all` is
//!   every file (it replaces a choice the resume data kept from an earlier run).
//! - `--only` matches a file's path inside the torrent (without the torrent's name for a
//!   multi-file torrent) as `.gitignore` does: `*` and `?` stay within one folder, `**` crosses
//!   folders, a pattern without `/` (but for a trailing one) matches at any depth (`*.mkv`), a
//!   pattern with a `/` at its start or middle is anchored at the top, and one ending in `/`
//!   names folders and everything below them.
//! - Both given: the union. Padding files (BEP 47) are never selected: they are never written.
//!
//! Refused, each with one line naming the culprit: an index past the last file, a range that
//! goes backwards, an empty entry or pattern, a pattern that is not a glob, and a selection that
//! picks no file at all. A pattern that matches nothing, while others do, is only a warning
//! ([`Selection::unmatched`]): with `--only '*.mkv' --only '*.srt'` a torrent without subtitles is
//! not an error.
//!
//! Bounds: at most [`MAX_SELECT_ENTRIES`] entries in a `--select` list; the globs are as many as
//! the command line holds.

use std::ops::RangeInclusive;

use bt_protocol::metainfo::{FileEntry, Info};
use bt_protocol::torrent::FilePriority;
use globset::{GlobBuilder, GlobMatcher};

/// The most comma-separated entries a `--select` list may have.
pub const MAX_SELECT_ENTRIES: usize = 10_000;

/// Why a selection is refused. Each message is one line a user can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// An entry of `--select` is not a number or a range `A-B`.
    #[error("--select {list}: '{entry}' is not a file index, a range like 2-4, or all")]
    NotIndex {
        /// The whole list.
        list: String,
        /// The entry.
        entry: String,
    },
    /// A range `A-B` with `A > B`.
    #[error("--select {list}: the range {start}-{end} goes backwards")]
    Backwards {
        /// The whole list.
        list: String,
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// An index past the last file.
    #[error(
        "--select {list}: there is no file {index}; the torrent's files are 0-{last} (see bt info)"
    )]
    OutOfRange {
        /// The whole list.
        list: String,
        /// The index.
        index: u64,
        /// The last file's index.
        last: usize,
    },
    /// More entries than [`MAX_SELECT_ENTRIES`].
    #[error("--select has more than {MAX_SELECT_ENTRIES} entries")]
    TooManyEntries,
    /// An empty `--only` pattern.
    #[error("--only needs a pattern; '' matches nothing")]
    EmptyGlob,
    /// A pattern globset cannot read (an unclosed `[`, say).
    #[error("--only '{pattern}' is not a valid pattern: {why}")]
    BadGlob {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        why: String,
    },
    /// The selection picks no file.
    #[error("{what} selects no file of the torrent (see bt info for its files)")]
    Nothing {
        /// What was given, as typed.
        what: String,
    },
}

/// A parsed `--only` pattern.
#[derive(Clone, Debug)]
pub struct Glob {
    pattern: String,
    matcher: GlobMatcher,
}

impl Glob {
    /// Parses `pattern` with `.gitignore` semantics (see the module docs).
    pub fn new(pattern: &str) -> Result<Glob, SelectError> {
        if pattern.is_empty() {
            return Err(SelectError::EmptyGlob);
        }
        let folder = pattern.ends_with('/');
        let body = pattern.trim_end_matches('/');
        let anchored = body.contains('/');
        let body = body.trim_start_matches('/');
        if body.is_empty() {
            return Err(SelectError::EmptyGlob);
        }
        let mut full = if anchored {
            body.to_owned()
        } else {
            format!("**/{body}")
        };
        if folder {
            full.push_str("/**");
        }
        let matcher = GlobBuilder::new(&full)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| SelectError::BadGlob {
                pattern: pattern.to_owned(),
                why: e.kind().to_string(),
            })?
            .compile_matcher();
        Ok(Glob {
            pattern: pattern.to_owned(),
            matcher,
        })
    }

    /// Whether the pattern matches `path` (a file's path inside the torrent, `/`-separated).
    pub fn is_match(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

/// Parses a `--select` list (`0,2-4`) for a torrent of `files` files.
pub fn parse_select(list: &str, files: usize) -> Result<Vec<RangeInclusive<usize>>, SelectError> {
    let not_index = |entry: &str| SelectError::NotIndex {
        list: list.to_owned(),
        entry: entry.to_owned(),
    };
    let number = |s: &str| -> Result<u64, SelectError> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_index(s));
        }
        // All digits: only overflow can fail, and so large an index is out of range anyway.
        Ok(t.parse().unwrap_or(u64::MAX))
    };
    let mut out = Vec::new();
    for (n, entry) in list.split(',').enumerate() {
        if n >= MAX_SELECT_ENTRIES {
            return Err(SelectError::TooManyEntries);
        }
        if entry.trim().eq_ignore_ascii_case("all") {
            if files > 0 {
                out.push(0..=files - 1);
            }
            continue;
        }
        let (start, end) = match entry.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let i = number(entry)?;
                (i, i)
            }
        };
        if start > end {
            return Err(SelectError::Backwards {
                list: list.to_owned(),
                start,
                end,
            });
        }
        if end >= files as u64 {
            return Err(SelectError::OutOfRange {
                list: list.to_owned(),
                index: end,
                last: files.saturating_sub(1),
            });
        }
        out.push(start as usize..=end as usize);
    }
    Ok(out)
}

/// The files `priorities` want, as a `--select` list would name them (`0,2-4`).
pub fn describe(priorities: &[FilePriority]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, p) in priorities.iter().enumerate() {
        if *p == FilePriority::Skip {
            continue;
        }
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => ranges.push((i, i)),
        }
    }
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A file's path inside the torrent: without the torrent's name for a multi-file torrent.
pub fn path_in_torrent(file: &FileEntry, multi_file: bool) -> String {
    let skip = usize::from(multi_file && file.path.len() > 1);
    file.path[skip..].join("/")
}

/// What the user chose: the per-file priorities, and the patterns that matched no file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// One priority per file of the torrent.
    pub priorities: Vec<FilePriority>,
    /// The `--only` patterns that matched no file (a warning, see the module docs).
    pub unmatched: Vec<String>,
}

/// The files `--select` (`select`, if given) and `--only` (`globs`) choose in `info`, as
/// priorities ([`FilePriority::Normal`] for a chosen file, [`FilePriority::Skip`] otherwise);
/// `None` when neither was given (every file is wanted).
pub fn choose(
    info: &Info,
    select: Option<&str>,
    globs: &[String],
) -> Result<Option<Selection>, SelectError> {
    if select.is_none() && globs.is_empty() {
        return Ok(None);
    }
    let ranges = match select {
        Some(list) => parse_select(list, info.files.len())?,
        None => Vec::new(),
    };
    let globs = globs
        .iter()
        .map(|g| Glob::new(g))
        .collect::<Result<Vec<_>, _>>()?;
    let multi_file = !info.single_file;
    let mut matched = vec![false; globs.len()];
    let priorities = info
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = path_in_torrent(f, multi_file);
            let mut chosen = ranges.iter().any(|r| r.contains(&i));
            for (g, hit) in globs.iter().zip(&mut matched) {
                if !f.attr.padding && g.is_match(&path) {
                    *hit = true;
                    chosen = true;
                }
            }
            if chosen && !f.attr.padding {
                FilePriority::Normal
            } else {
                FilePriority::Skip
            }
        })
        .collect();
    let selection = Selection {
        priorities,
        unmatched: globs
            .iter()
            .zip(&matched)
            .filter(|(_, hit)| !**hit)
            .map(|(g, _)| g.pattern().to_owned())
            .collect(),
    };
    check_some(selection.priorities.as_slice(), || {
        let mut what: Vec<String> = select
            .map(|s| format!("--select {s}"))
            .into_iter()
            .collect();
        what.extend(globs.iter().map(|g| format!("--only '{}'", g.pattern())));
        what.join(" ")
    })?;
    Ok(Some(selection))
}

/// The priorities a magnet link's `so=` (BEP 53) gives `info`: indices past the last file are
/// ignored (the link was made by someone else); `None` when the list is empty.
pub fn select_only(
    info: &Info,
    ranges: &[RangeInclusive<u32>],
) -> Result<Option<Vec<FilePriority>>, SelectError> {
    if ranges.is_empty() {
        return Ok(None);
    }
    let priorities: Vec<FilePriority> = info
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let chosen = u32::try_from(i).is_ok_and(|i| ranges.iter().any(|r| r.contains(&i)));
            if chosen && !f.attr.padding {
                FilePriority::Normal
            } else {
                FilePriority::Skip
            }
        })
        .collect();
    check_some(&priorities, || "the magnet link's so=".to_owned())?;
    Ok(Some(priorities))
}

/// Refuses priorities that skip every file.
fn check_some(
    priorities: &[FilePriority],
    what: impl FnOnce() -> String,
) -> Result<(), SelectError> {
    if priorities.iter().all(|p| *p == FilePriority::Skip) {
        return Err(SelectError::Nothing { what: what() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bt_protocol::metainfo::{FileAttr, TorrentLayout};

    use super::*;

    fn info(paths: &[&str]) -> Info {
        let files: Vec<FileEntry> = paths
            .iter()
            .map(|p| FileEntry {
                path: std::iter::once("T")
                    .chain(p.split('/'))
                    .map(str::to_owned)
                    .collect(),
                length: 10,
                attr: FileAttr::default(),
            })
            .collect();
        Info {
            name: "T".into(),
            layout: TorrentLayout::new(16, &vec![10; files.len()]).unwrap(),
            pieces: vec![[0; 20]; (10 * files.len()).div_ceil(16)],
            files,
            piece_length: 16,
            single_file: false,
            private: false,
        }
    }

    fn chosen(info: &Info, select: Option<&str>, globs: &[&str]) -> Vec<usize> {
        let globs: Vec<String> = globs.iter().map(|g| (*g).to_owned()).collect();
        let s = choose(info, select, &globs).unwrap().unwrap();
        (0..s.priorities.len())
            .filter(|&i| s.priorities[i] == FilePriority::Normal)
            .collect()
    }

    const TREE: [&str; 5] = [
        "a.mkv",
        "sub/b.mkv",
        "sub/deep/c.mkv",
        "sub/notes.txt",
        "other/sub/d.txt",
    ];

    #[test]
    fn select_lists_and_ranges() {
        // Proves `0,2-4` means files 0, 2, 3, 4, and that single indices and ranges mix.
        let i = info(&TREE);
        assert_eq!(chosen(&i, Some("0,2-4"), &[]), [0, 2, 3, 4]);
        assert_eq!(chosen(&i, Some("1"), &[]), [1]);
        assert_eq!(chosen(&i, Some("all"), &[]), [0, 1, 2, 3, 4]);
        assert_eq!(chosen(&i, Some("1,ALL"), &[]), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_choice_is_described_as_a_select_list() {
        // Proves the description of a choice is the `--select` list that makes it again.
        use FilePriority::{High, Normal, Skip};
        assert_eq!(
            describe(&[Normal, Skip, High, Normal, Normal, Skip]),
            "0,2-4"
        );
        assert_eq!(describe(&[Skip, Normal]), "1");
        let i = info(&TREE);
        let list = describe(&choose(&i, Some("0,2-3"), &[]).unwrap().unwrap().priorities);
        assert_eq!(chosen(&i, Some(&list), &[]), [0, 2, 3]);
    }

    #[test]
    fn bad_select_lists_name_the_culprit() {
        // Proves out-of-range indices, backwards ranges and junk are refused with their own
        // message naming the list.
        assert_eq!(
            parse_select("9", 3).unwrap_err().to_string(),
            "--select 9: there is no file 9; the torrent's files are 0-2 (see bt info)"
        );
        assert_eq!(
            parse_select("3-1", 5).unwrap_err().to_string(),
            "--select 3-1: the range 3-1 goes backwards"
        );
        assert!(matches!(
            parse_select("1,,2", 5),
            Err(SelectError::NotIndex { .. })
        ));
        assert!(matches!(
            parse_select("-1", 5),
            Err(SelectError::NotIndex { .. })
        ));
        assert!(matches!(
            parse_select("99999999999999999999999", 5),
            Err(SelectError::OutOfRange { .. })
        ));
    }

    #[test]
    fn gitignore_semantics() {
        // Proves the rules of the module docs: a pattern without `/` matches a name at any
        // depth, `*` stays in one folder, `**` crosses folders, `/` anchors, a trailing `/`
        // takes a whole folder.
        let i = info(&TREE);
        assert_eq!(chosen(&i, None, &["*.mkv"]), [0, 1, 2]);
        assert_eq!(chosen(&i, None, &["sub/*.mkv"]), [1]);
        assert_eq!(chosen(&i, None, &["sub/**/*.mkv"]), [1, 2]);
        assert_eq!(chosen(&i, None, &["/a.mkv"]), [0]);
        // As in .gitignore, a trailing `/` alone does not anchor: every folder named sub.
        assert_eq!(chosen(&i, None, &["sub/"]), [1, 2, 3, 4]);
        assert_eq!(chosen(&i, None, &["/sub/"]), [1, 2, 3]);
        assert_eq!(chosen(&i, None, &["**/sub/*.txt"]), [3, 4]);
        assert_eq!(chosen(&i, None, &["notes.txt"]), [3]);
        // The torrent's name is not part of the path matched: "T" names no file or folder.
        let none = choose(&i, None, &["T/*.mkv".to_owned()]).unwrap_err();
        assert_eq!(
            none.to_string(),
            "--only 'T/*.mkv' selects no file of the torrent (see bt info for its files)"
        );
    }

    #[test]
    fn union_and_unmatched_patterns() {
        // Proves --select and --only add up, a pattern matching nothing is reported (not an
        // error while others match), and an empty pattern is refused.
        let i = info(&TREE);
        assert_eq!(chosen(&i, Some("4"), &["a.mkv"]), [0, 4]);
        let s = choose(&i, None, &["*.mkv".to_owned(), "*.srt".to_owned()])
            .unwrap()
            .unwrap();
        assert_eq!(s.unmatched, ["*.srt"]);
        assert_eq!(
            choose(&i, None, &[String::new()]).unwrap_err(),
            SelectError::EmptyGlob
        );
        assert!(matches!(
            choose(&i, None, &["[a".to_owned()]),
            Err(SelectError::BadGlob { .. })
        ));
    }

    #[test]
    fn magnet_select_only() {
        // Proves BEP 53 `so=` ranges map to files, ignoring indices past the end, and that a
        // link selecting no existing file is refused.
        let i = info(&TREE);
        let p = select_only(&i, &[1..=2, 9..=12]).unwrap().unwrap();
        use FilePriority::{Normal, Skip};
        assert_eq!(p, [Skip, Normal, Normal, Skip, Skip]);
        assert!(select_only(&i, &[]).unwrap().is_none());
        assert!(select_only(&i, &[7..=8]).is_err());
    }
}
