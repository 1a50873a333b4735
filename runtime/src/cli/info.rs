//! `bt info`: what a `.torrent` file or magnet link holds, as text for people or JSON for scripts.
//! Warnings (accepted oddities of the file) go to stderr; the report goes to stdout.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use bt_protocol::metainfo::magnet::MagnetLink;
use bt_protocol::metainfo::{FileEntry, Metainfo};
use bt_runtime::units::{format_bytes, format_count};
use serde::Serialize;

pub(crate) fn run(target: &str, json: bool) -> anyhow::Result<()> {
    if target
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"))
    {
        let link = MagnetLink::parse(target)?;
        print!(
            "{}",
            if json {
                magnet_json(&link)?
            } else {
                magnet_text(&link)
            }
        );
        return Ok(());
    }
    let path = PathBuf::from(target);
    let bytes =
        super::read_torrent_file(&path, bt_protocol::metainfo::MAX_TORRENT_FILE_SIZE as u64)?;
    let meta = Metainfo::from_bytes(&bytes).with_context(|| path.display().to_string())?;
    for w in &meta.warnings {
        eprintln!("bt: warning: {}: {w}", path.display());
    }
    print!(
        "{}",
        if json {
            torrent_json(&meta)?
        } else {
            torrent_text(&meta)
        }
    );
    Ok(())
}

/// A magnet link for the torrent: info hash, name and trackers.
fn magnet_of(meta: &Metainfo) -> MagnetLink {
    MagnetLink {
        info_hash: meta.info_hash,
        display_name: Some(meta.info.name.clone()),
        trackers: meta.tracker_urls().map(str::to_owned).collect(),
        peers: Vec::new(),
        select_only: Vec::new(),
    }
}

fn date(seconds: i64) -> String {
    match u64::try_from(seconds) {
        Ok(s) => match UNIX_EPOCH.checked_add(Duration::from_secs(s)) {
            Some(t) if s < 253_402_300_800 => humantime::format_rfc3339_seconds(t).to_string(),
            _ => format!("{seconds} (not a valid date)"),
        },
        Err(_) => format!("{seconds} (before 1970)"),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The text report. Stable: snapshot tests hold it.
fn torrent_text(meta: &Metainfo) -> String {
    let info = &meta.info;
    let layout = &info.layout;
    let real: Vec<(usize, &FileEntry)> = info
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.attr.padding)
        .collect();
    let padding: Vec<&FileEntry> = info.files.iter().filter(|f| f.attr.padding).collect();
    let data_bytes: u64 = real.iter().map(|(_, f)| f.length).sum();

    let mut out = String::new();
    let mut line = |key: &str, value: &str| {
        let _ = writeln!(out, "{key:<12} {value}");
    };
    line("name", &info.name);
    line("info hash", &meta.info_hash.to_hex());
    line("magnet", &magnet_of(meta).to_uri());
    line(
        "size",
        &format!(
            "{} ({} bytes) in {} file{}",
            format_bytes(data_bytes),
            format_count(data_bytes),
            real.len(),
            if real.len() == 1 { "" } else { "s" }
        ),
    );
    line(
        "pieces",
        &format!(
            "{} x {} (last piece {})",
            format_count(u64::from(layout.piece_count())),
            format_bytes(u64::from(layout.piece_length())),
            format_bytes(u64::from(layout.last_piece_length()))
        ),
    );
    line("private", yes_no(info.private));
    if let Some(c) = &meta.created_by {
        line("created by", c);
    }
    if let Some(d) = meta.creation_date {
        line("created on", &date(d));
    }
    if let Some(c) = &meta.comment {
        line("comment", c);
    }
    if meta.trackers.is_empty() {
        line("trackers", "none");
    } else {
        let _ = writeln!(out, "trackers");
        for (i, tier) in meta.trackers.iter().enumerate() {
            for (j, url) in tier.iter().enumerate() {
                let label = if j == 0 {
                    format!("tier {}", i + 1)
                } else {
                    String::new()
                };
                let _ = writeln!(out, "  {label:<8} {url}");
            }
        }
    }
    if !meta.web_seeds.is_empty() {
        let _ = writeln!(out, "web seeds");
        for url in &meta.web_seeds {
            let _ = writeln!(out, "  {url}");
        }
    }
    let _ = writeln!(out, "files (index for bt get --select)");
    out.push_str(&file_tree(&real));
    if !padding.is_empty() {
        let pad_bytes: u64 = padding.iter().map(|f| f.length).sum();
        let _ = writeln!(
            out,
            "  ({} padding files, {}, not shown: BEP 47 alignment, never written to disk)",
            padding.len(),
            format_bytes(pad_bytes)
        );
    }
    out
}

/// Files as an indented tree, each with its index in the torrent's file list (what
/// `bt get --select` takes), folders ending in `/`, sizes right-aligned in one column.
fn file_tree(files: &[(usize, &FileEntry)]) -> String {
    let mut rows: Vec<(String, Option<(usize, u64)>)> = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    let index_width = files.last().map_or(1, |(i, _)| i.to_string().len());
    for &(index, f) in files {
        let (dirs, name) = f.path.split_at(f.path.len() - 1);
        let common = open
            .iter()
            .zip(dirs)
            .take_while(|(a, b)| **a == b.as_str())
            .count();
        open.truncate(common);
        for d in &dirs[common..] {
            rows.push((format!("{}{d}/", "  ".repeat(open.len() + 1)), None));
            open.push(d);
        }
        rows.push((
            format!("{}{}", "  ".repeat(open.len() + 1), name[0]),
            Some((index, f.length)),
        ));
    }
    let width = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (name, size) in rows {
        match size {
            Some((index, s)) => {
                let pad = width - name.chars().count();
                let _ = writeln!(
                    out,
                    "  {index:>index_width$}{name}{:pad$}  {:>10}",
                    "",
                    format_bytes(s)
                );
            }
            None => {
                let _ = writeln!(out, "  {:index_width$}{name}", "");
            }
        }
    }
    out
}

#[derive(Serialize)]
struct TorrentJson<'a> {
    name: &'a str,
    info_hash: String,
    magnet: String,
    total_size: u64,
    piece_length: u32,
    piece_count: u32,
    last_piece_length: u32,
    private: bool,
    files: Vec<FileJson>,
    trackers: &'a [Vec<String>],
    web_seeds: &'a [String],
    comment: Option<&'a str>,
    created_by: Option<&'a str>,
    creation_date: Option<i64>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct FileJson {
    /// The index `bt get --select` takes.
    index: usize,
    path: String,
    size: u64,
    padding: bool,
    attr: Option<String>,
}

fn torrent_json(meta: &Metainfo) -> anyhow::Result<String> {
    let layout = &meta.info.layout;
    let report = TorrentJson {
        name: &meta.info.name,
        info_hash: meta.info_hash.to_hex(),
        magnet: magnet_of(meta).to_uri(),
        total_size: layout.total_length(),
        piece_length: layout.piece_length(),
        piece_count: layout.piece_count(),
        last_piece_length: layout.last_piece_length(),
        private: meta.info.private,
        files: meta
            .info
            .files
            .iter()
            .enumerate()
            .map(|(index, f)| FileJson {
                index,
                path: f.path_string(),
                size: f.length,
                padding: f.attr.padding,
                attr: f.attr_string(),
            })
            .collect(),
        trackers: &meta.trackers,
        web_seeds: &meta.web_seeds,
        comment: meta.comment.as_deref(),
        created_by: meta.created_by.as_deref(),
        creation_date: meta.creation_date,
        warnings: &meta.warnings,
    };
    Ok(serde_json::to_string_pretty(&report)? + "\n")
}

fn magnet_text(link: &MagnetLink) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {}",
        "name",
        link.display_name.as_deref().unwrap_or("(none given)")
    );
    let _ = writeln!(out, "{:<12} {}", "info hash", link.info_hash.to_hex());
    let _ = writeln!(out, "{:<12} {}", "magnet", link.to_uri());
    if link.trackers.is_empty() {
        let _ = writeln!(out, "{:<12} none", "trackers");
    } else {
        let _ = writeln!(out, "trackers");
        for t in &link.trackers {
            let _ = writeln!(out, "  {t}");
        }
    }
    if !link.peers.is_empty() {
        let _ = writeln!(out, "peers");
        for p in &link.peers {
            let _ = writeln!(out, "  {p}");
        }
    }
    if !link.select_only.is_empty() {
        let ranges: Vec<String> = link
            .select_only
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                }
            })
            .collect();
        let _ = writeln!(out, "{:<12} {}", "files", ranges.join(","));
    }
    let _ = writeln!(
        out,
        "(a magnet link carries no file list or sizes: they come from peers)"
    );
    out
}

fn magnet_json(link: &MagnetLink) -> anyhow::Result<String> {
    let value = serde_json::json!({
        "name": link.display_name,
        "info_hash": link.info_hash.to_hex(),
        "magnet": link.to_uri(),
        "trackers": link.trackers,
        "peers": link.peers,
        "select_only": link.select_only.iter().map(|r| [*r.start(), *r.end()]).collect::<Vec<_>>(),
    });
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}
