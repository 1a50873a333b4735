//! The server's pure parts: request targets, ranges, pages.

use super::pages::{content_type, html_escape, is_media};
use super::request::{
    MAX_TARGET_LEN, RangeRequest, Target, TargetError, parse_range, parse_target,
    percent_encode_path,
};

fn range(header: &str, len: u64) -> RangeRequest {
    parse_range(Some(header.as_bytes()), len)
}

fn partial(start: u64, last: u64) -> RangeRequest {
    RangeRequest::Partial { start, last }
}

#[test]
fn ranges_read_as_rfc_9110_says_for_one_range() {
    // Proves the three forms, clamping at the end, and what is ignored or unsatisfiable.
    assert_eq!(parse_range(None, 100), RangeRequest::Full);
    assert_eq!(range("bytes=0-9", 100), partial(0, 9));
    assert_eq!(range("bytes=90-", 100), partial(90, 99));
    assert_eq!(range("bytes=90-1000", 100), partial(90, 99));
    assert_eq!(range("bytes=-10", 100), partial(90, 99));
    assert_eq!(range("bytes=-1000", 100), partial(0, 99));
    assert_eq!(range(" Bytes = 5-5 ", 100), partial(5, 5));
    assert_eq!(range("bytes=99-99", 100), partial(99, 99));
    assert_eq!(range("bytes=100-", 100), RangeRequest::Unsatisfiable);
    assert_eq!(range("bytes=100-200", 100), RangeRequest::Unsatisfiable);
    assert_eq!(range("bytes=-0", 100), RangeRequest::Unsatisfiable);
    assert_eq!(range("bytes=0-", 0), RangeRequest::Unsatisfiable);
    assert_eq!(range("bytes=-5", 0), RangeRequest::Unsatisfiable);
    assert_eq!(
        range("bytes=99999999999999999999999-", 100),
        RangeRequest::Unsatisfiable
    );
    // Several ranges, another unit, bad syntax: the whole file.
    assert_eq!(range("bytes=0-1,5-6", 100), RangeRequest::Full);
    assert_eq!(range("items=0-1", 100), RangeRequest::Full);
    assert_eq!(range("bytes=5-1", 100), RangeRequest::Full);
    assert_eq!(range("bytes=a-b", 100), RangeRequest::Full);
    assert_eq!(range("bytes=-", 100), RangeRequest::Full);
    assert_eq!(range("bytes=+1-2", 100), RangeRequest::Full);
    assert_eq!(range("bytes 0-1", 100), RangeRequest::Full);
    assert_eq!(parse_range(Some(b"bytes=\xff-1"), 100), RangeRequest::Full);
}

fn file(index: usize, name: &str) -> Result<Target, TargetError> {
    Ok(Target::File {
        index,
        name: name.into(),
    })
}

#[test]
fn targets_decode_names_and_refuse_paths_that_leave_the_torrent() {
    // Proves the routes, percent-decoding per component, and every refused path shape.
    assert_eq!(parse_target("/"), Ok(Target::Index));
    assert_eq!(parse_target("/?x=1"), Ok(Target::Index));
    assert_eq!(parse_target("/playlist.m3u"), Ok(Target::Playlist));
    assert_eq!(parse_target("/files/0/a.mkv"), file(0, "a.mkv"));
    assert_eq!(
        parse_target("/files/12/d/s%20b/c%C3%A9.mp4?t=1"),
        file(12, "d/s b/cé.mp4")
    );
    assert_eq!(parse_target("/nothing"), Err(TargetError::NotFound));
    assert_eq!(parse_target("/files/x/a"), Err(TargetError::NotFound));
    assert_eq!(parse_target("/files/0"), Err(TargetError::NotFound));
    assert_eq!(
        parse_target("/files/9999999999/a"),
        Err(TargetError::NotFound)
    );
    for bad in [
        "/files/0/../etc/passwd",
        "/files/0/a/%2e%2e/b",
        "/files/0/%2E%2E",
        "/files/0/./a",
        "/files/0/a%2Fb",
        "/files/0/a%5cb",
        "/files/0/a%00",
        "/files/0/a//b",
        "/files/0/",
        "/files/0/a%zz",
        "/files/0/a%4",
        "/files/0/%ff",
    ] {
        assert!(
            matches!(parse_target(bad), Err(TargetError::BadPath(_))),
            "{bad}: {:?}",
            parse_target(bad)
        );
    }
    let long = format!("/files/0/{}", "a".repeat(MAX_TARGET_LEN));
    assert!(matches!(parse_target(&long), Err(TargetError::BadPath(_))));
}

#[test]
fn encoded_paths_decode_back_to_the_same_name() {
    // Proves that the links the pages write lead back to their files.
    for name in ["multi/sub dir/b #1?.bin", "é/ü%.mkv", "a+b&c=d.mp4"] {
        let target = format!("/files/3/{}", percent_encode_path(name));
        assert_eq!(parse_target(&target), file(3, name));
    }
}

#[test]
fn pages_escape_names_and_types_come_from_extensions() {
    // Proves HTML escaping and the media table the playlist uses.
    assert_eq!(
        html_escape("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
    assert_eq!(content_type("x/Film.MKV"), "video/x-matroska");
    assert_eq!(content_type("song.mp3"), "audio/mpeg");
    assert_eq!(content_type("noext"), "application/octet-stream");
    assert!(is_media(content_type("a.mp4")));
    assert!(!is_media(content_type("a.txt")));
}
