//! Fuzzes the request parsing of `bt get --serve` (`bt_runtime::serve::request`): any bytes as a
//! request target and as a `Range` header, against files of several lengths.
//! - `parse_target` never panics; a file name it accepts has no empty, `.` or `..` component and
//!   no `\` or NUL, and encoding it back (`percent_encode_path`) gives the same target when
//!   that fits the bound (`MAX_TARGET_LEN`; else it is refused);
//! - `parse_range` never panics; a partial range lies within the file (start <= last < len),
//!   and a range it reads from the same numbers written plainly (`bytes=A-B`, `bytes=A-`,
//!   `bytes=-N`) is the one RFC 9110 gives.
#![no_main]

use bt_runtime::serve::request::{
    MAX_TARGET_LEN, RangeRequest, Target, parse_range, parse_target, percent_encode_path,
};
use libfuzzer_sys::fuzz_target;

/// File lengths each header is read against.
const LENGTHS: [u64; 5] = [0, 1, 100, 1 << 40, u64::MAX];

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_target(text);
    }
    for len in LENGTHS {
        check_range(parse_range(Some(data), len), len);
    }
    // The same bytes as two numbers, written as each form of range.
    if data.len() >= 16 {
        let a = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) >> (data[0] % 64);
        let b = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes")) >> (data[8] % 64);
        for len in LENGTHS {
            check_forms(a, b, len);
        }
    }
});

fn check_target(text: &str) {
    let Ok(Target::File { index, name }) = parse_target(text) else {
        return;
    };
    for component in name.split('/') {
        assert!(!component.is_empty() && component != "." && component != "..", "{name:?}");
        assert!(!component.contains(['\\', '\0']), "{name:?}");
    }
    // Encoding may lengthen a name up to threefold: a target past the bound is refused whole.
    let again = format!("/files/{index}/{}", percent_encode_path(&name));
    if again.len() <= MAX_TARGET_LEN {
        assert_eq!(parse_target(&again), Ok(Target::File { index, name }));
    } else {
        assert!(parse_target(&again).is_err());
    }
}

fn check_range(range: RangeRequest, len: u64) {
    if let RangeRequest::Partial { start, last } = range {
        assert!(start <= last && last < len, "{start}-{last} of {len}");
    }
}

fn check_forms(a: u64, b: u64, len: u64) {
    let read = |header: String| parse_range(Some(header.as_bytes()), len);
    let expected = if a >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial { start: a, last: b.min(len - 1) }
    };
    if b >= a {
        assert_eq!(read(format!("bytes={a}-{b}")), expected);
    } else {
        assert_eq!(read(format!("bytes={a}-{b}")), RangeRequest::Full);
    }
    let open = if a >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial { start: a, last: len - 1 }
    };
    assert_eq!(read(format!("bytes={a}-")), open);
    let suffix = if b == 0 || len == 0 {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial { start: len - b.min(len), last: len - 1 }
    };
    assert_eq!(read(format!("bytes=-{b}")), suffix);
}
