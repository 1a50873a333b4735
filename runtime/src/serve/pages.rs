//! What the server says besides file bytes: the files a torrent offers ([`Catalog`]), the HTML
//! index, the M3U playlist and each file's `Content-Type`. Pure functions of the catalog.
//!
//! Invariant: every name written into HTML is escaped, and every name in a URL is
//! percent-encoded ([`super::request::percent_encode_path`]); the playlist's URLs start with the
//! address the client connected to, never with its `Host` header.

use std::net::SocketAddr;

use bt_protocol::metainfo::Info;
use bt_protocol::session::TorrentId;
use bt_protocol::torrent::FilePriority;

use super::request::percent_encode_path;
use crate::units::format_bytes;

/// One file of the torrent as the server offers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedFile {
    /// Its path inside the torrent, components joined with `/` (as `bt info` prints it).
    pub path: String,
    /// Where it starts in the torrent's byte stream.
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
    /// Whether it is downloaded (`--select`/`--only` left it in).
    pub selected: bool,
    /// A BEP 47 padding file: never offered.
    pub padding: bool,
}

/// The torrent's files, by index as `bt info` prints them.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The torrent in the driver.
    pub torrent: TorrentId,
    /// The torrent's name.
    pub name: String,
    /// The files, padding files included (so indices match `bt info`'s).
    pub files: Vec<ServedFile>,
}

impl Catalog {
    /// The files of `info`, as torrent `torrent` of the driver downloads them with `priorities`
    /// (`None`: every file).
    pub fn new(torrent: TorrentId, info: &Info, priorities: Option<&[FilePriority]>) -> Self {
        let files = info
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| ServedFile {
                path: f.path_string(),
                offset: info.layout.file_range(i).map_or(0, |(start, _)| start),
                length: f.length,
                selected: priorities
                    .and_then(|p| p.get(i))
                    .is_none_or(|p| *p != FilePriority::Skip),
                padding: f.attr.padding,
            })
            .collect();
        Catalog {
            torrent,
            name: info.name.clone(),
            files,
        }
    }

    /// The files offered (not padding), with their indices.
    pub fn offered(&self) -> impl Iterator<Item = (usize, &ServedFile)> {
        self.files.iter().enumerate().filter(|(_, f)| !f.padding)
    }
}

/// The URL path of file `index` with path `path`: `/files/INDEX/NAME`.
pub fn file_url_path(index: usize, path: &str) -> String {
    format!("/files/{index}/{}", percent_encode_path(path))
}

/// `text` safe inside HTML text and double-quoted attributes.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML page at `/`: each offered file as a link with its size; files not selected for
/// download are listed without a link.
pub fn index_html(catalog: &Catalog) -> String {
    let name = html_escape(&catalog.name);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{name}</title></head>\n\
         <body><h1>{name}</h1>\n<p><a href=\"/playlist.m3u\">playlist.m3u</a></p>\n<ul>\n"
    );
    for (i, f) in catalog.offered() {
        let path = html_escape(&f.path);
        let size = format_bytes(f.length);
        if f.selected {
            let href = html_escape(&file_url_path(i, &f.path));
            out.push_str(&format!(
                "<li><a href=\"{href}\">{path}</a> ({size})</li>\n"
            ));
        } else {
            out.push_str(&format!(
                "<li>{path} ({size}, not selected for download)</li>\n"
            ));
        }
    }
    out.push_str("</ul></body></html>\n");
    out
}

/// The playlist at `/playlist.m3u`: every selected video or audio file, as an absolute URL on
/// `local` (the address the client reached).
pub fn playlist_m3u(catalog: &Catalog, local: SocketAddr) -> String {
    let mut out = String::from("#EXTM3U\n");
    for (i, f) in catalog.offered() {
        if !f.selected || !is_media(content_type(&f.path)) {
            continue;
        }
        // A title on one line: a line break in a name would start a new entry.
        let title: String = f
            .path
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out.push_str(&format!(
            "#EXTINF:-1,{title}\nhttp://{local}{}\n",
            file_url_path(i, &f.path)
        ));
    }
    out
}

/// Whether a `Content-Type` is video or audio.
pub fn is_media(content_type: &str) -> bool {
    content_type.starts_with("video/") || content_type.starts_with("audio/")
}

/// The `Content-Type` for a file named `path`, from its extension; `application/octet-stream`
/// for any other.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        "mov" => "video/quicktime",
        "ts" | "m2ts" => "video/mp2t",
        "mpg" | "mpeg" => "video/mpeg",
        "ogv" => "video/ogg",
        "flv" => "video/x-flv",
        "wmv" => "video/x-ms-wmv",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "wav" => "audio/wav",
        "txt" | "nfo" | "srt" | "md" => "text/plain; charset=utf-8",
        "vtt" => "text/vtt",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}
