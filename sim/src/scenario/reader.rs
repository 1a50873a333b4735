//! The `reader` group key (a simulated player per peer) and the streaming expectations
//! (`first_byte_within`, `stalls_at_most`, `stall_seconds_at_most`), read and checked.
//!
//! A group's `reader = { file = 0, rate = "2 MiB/s", start = 5, seek = [[30, 0.5]],
//! deadlines = true }` makes each of its peers (leechers of a torrent file) read file `file` in
//! order at `rate` from `start` seconds after the peer joins, jumping to a fraction of the file
//! at each seek (seconds after the reader's start); `deadlines = false` reads the same way
//! without telling the client where (no `set_reader`). The fast engine runs the player
//! (`sim/src/fast/player.rs`); the turmoil engine refuses it.
//!
//! Bounds: at most [`MAX_SEEKS`] seeks per reader; each expectation names each group at most
//! once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Bytes, Ctx, EngineKind, GroupSpec, Role, ScenarioError, Seconds};

/// Most seeks one reader makes.
pub const MAX_SEEKS: usize = 64;

/// A group's simulated player (`reader` in a `[[group]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ReaderSpec {
    /// The file it reads, by index.
    pub file: usize,
    /// Bytes per second it reads.
    pub rate: u64,
    /// When it starts reading, after its peer joins.
    pub start: Duration,
    /// Seeks, in time order: when (after the reader's start) and where (a fraction of the file,
    /// 0 to 1; 1 is its end).
    pub seeks: Vec<(Duration, f64)>,
    /// Whether the player tells the client where it reads (`Client::set_reader`); `false` reads
    /// the same way and leaves the piece order to the group's `strategy`.
    pub deadlines: bool,
}

/// `reader = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReader {
    #[serde(default)]
    file: Option<u32>,
    rate: Bytes,
    #[serde(default)]
    start: Option<Seconds>,
    #[serde(default)]
    seek: Option<Vec<(Seconds, f64)>>,
    #[serde(default)]
    deadlines: Option<bool>,
}

/// An expectation given for every group with a reader (a value) or by group name (a table).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawPerGroup<T> {
    All(T),
    Groups(BTreeMap<String, T>),
}

/// Checks a group's `reader`: leechers of a torrent file only (not magnets), a file the torrent
/// has (and the group selects), a rate of at least 1 byte/s, seek fractions from 0 to 1, at most
/// [`MAX_SEEKS`] seeks; the fast engine only.
pub(super) fn check_reader(
    cx: &Ctx<'_>,
    raw: &Spanned<RawReader>,
    role: Role,
    magnet: bool,
    select: Option<&[usize]>,
    files: usize,
    engine: EngineKind,
) -> Result<ReaderSpec, ScenarioError> {
    let span = raw.span();
    let r = raw.get_ref();
    let fail = |message: String| Err(cx.err(span.clone(), message));
    if engine == EngineKind::Turmoil {
        return fail(
            "a reader (a simulated player) runs only on the fast engine: the runtime's driver \
             takes no reader yet; use engine = \"fast\""
                .into(),
        );
    }
    if role != Role::Leecher || magnet {
        return fail(
            "reader goes with role = \"leecher\" and a torrent file (not magnet = true)".into(),
        );
    }
    let file = r.file.unwrap_or(0) as usize;
    if file >= files {
        return fail(format!(
            "reader reads file {file}; the torrent has {files} (0 to {})",
            files - 1
        ));
    }
    if select.is_some_and(|s| !s.contains(&file)) {
        return fail(format!(
            "reader reads file {file}, which the group's select leaves out"
        ));
    }
    if r.rate.0 == 0 {
        return fail("the reader's rate must be at least 1 byte/s".into());
    }
    let mut seeks: Vec<(Duration, f64)> = Vec::new();
    for (at, to) in r.seek.iter().flatten() {
        if !(to.is_finite() && (0.0..=1.0).contains(to)) {
            return fail(format!(
                "a seek goes to a fraction of the file from 0 to 1, not {to}"
            ));
        }
        seeks.push((at.0, *to));
    }
    if seeks.len() > MAX_SEEKS {
        return fail(format!("more than {MAX_SEEKS} seeks"));
    }
    seeks.sort_by_key(|s| s.0);
    Ok(ReaderSpec {
        file,
        rate: r.rate.0,
        start: r.start.map_or(Duration::ZERO, |s| s.0),
        seeks,
        deadlines: r.deadlines.unwrap_or(true),
    })
}

/// Reads a streaming expectation: a value for every group with a reader, or a table by group
/// name (each such a group). `None` when the key is absent.
pub(super) fn per_group<T: Copy>(
    cx: &Ctx<'_>,
    groups: &[GroupSpec],
    raw: Option<&Spanned<RawPerGroup<T>>>,
    key: &str,
) -> Result<BTreeMap<usize, T>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(BTreeMap::new());
    };
    let readers = || (0..groups.len()).filter(|g| groups[*g].reader.is_some());
    match raw.get_ref() {
        RawPerGroup::All(_) if readers().next().is_none() => {
            Err(cx.err(raw.span(), format!("{key} needs a group with a `reader`")))
        }
        RawPerGroup::All(v) => Ok(readers().map(|g| (g, *v)).collect()),
        RawPerGroup::Groups(map) => map
            .iter()
            .map(|(name, v)| {
                let g = super::group_index(cx, groups, name, raw.span())?;
                if groups[g].reader.is_none() {
                    return Err(
                        cx.err(raw.span(), format!("{key}: group `{name}` has no `reader`"))
                    );
                }
                Ok((g, *v))
            })
            .collect(),
    }
}

/// [`per_group`] for times in seconds, which must be more than 0 s.
pub(super) fn per_group_seconds(
    cx: &Ctx<'_>,
    groups: &[GroupSpec],
    raw: Option<&Spanned<RawPerGroup<Seconds>>>,
    key: &str,
) -> Result<BTreeMap<usize, Duration>, ScenarioError> {
    let map = per_group(cx, groups, raw, key)?;
    if let (Some(raw), true) = (raw, map.values().any(|s| s.0.is_zero())) {
        return Err(cx.err(raw.span(), format!("{key} must be more than 0 s")));
    }
    Ok(map.into_iter().map(|(g, s)| (g, s.0)).collect())
}
