//! Fuzzes the CLI's size parser and formatters (`bt_runtime::units`): `parse_bytes` never panics,
//! refuses with a message that quotes the input, and what it accepts is the same whatever the
//! case of the unit or the whitespace around it, and reads back from the plain number and from
//! each binary unit it is a whole multiple of; `format_bytes` of any size either reads back
//! within half its display unit (exactly when the size is a whole number of that unit) or is
//! refused (a fraction, or a unit over GiB); `format_count` is the decimal number in groups of three.
#![no_main]

use bt_runtime::units::{format_bytes, format_count, parse_bytes};
use libfuzzer_sys::fuzz_target;

/// The spellings `parse_bytes` accepts for each binary shift.
const UNITS: [(u32, &[&str]); 4] = [
    (0, &["", "B", "b"]),
    (10, &["K", "KiB", "kb", " kib"]),
    (20, &["M", "MiB", "mB", " M"]),
    (30, &["G", "GiB", "gb", " GIB"]),
];

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_parse(text);
    }
    // The same bytes as a size of any magnitude (the first byte picks a shift).
    if let [shift, rest @ ..] = data {
        let mut raw = [0u8; 8];
        let take = rest.len().min(8);
        raw[..take].copy_from_slice(&rest[..take]);
        let n = u64::from_le_bytes(raw) >> (shift % 64);
        check_format(n);
    }
});

fn check_parse(text: &str) {
    let n = match parse_bytes(text) {
        Ok(n) => n,
        Err(message) => {
            assert!(
                message.contains(&format!("`{text}`")),
                "the error quotes the input: {message:?}"
            );
            return;
        }
    };
    // Case and surrounding whitespace do not matter.
    assert_eq!(parse_bytes(&text.to_ascii_uppercase()), Ok(n), "{text:?}");
    assert_eq!(parse_bytes(&text.to_ascii_lowercase()), Ok(n), "{text:?}");
    assert_eq!(parse_bytes(&format!(" {text}\t")), Ok(n), "{text:?}");
    // The value reads back as a plain number and in every unit it is a multiple of.
    assert_eq!(parse_bytes(&n.to_string()), Ok(n));
    for (shift, spellings) in UNITS {
        if n.trailing_zeros() < shift && n != 0 {
            continue;
        }
        for unit in spellings {
            let again = format!("{}{unit}", n >> shift);
            assert_eq!(parse_bytes(&again), Ok(n), "{text:?} as {again:?}");
        }
    }
    check_format(n);
}

fn check_format(n: u64) {
    let shown = format_bytes(n);
    let unit_shift = match shown.rsplit(' ').next() {
        Some("B") => 0,
        Some("KiB") => 10,
        Some("MiB") => 20,
        Some("GiB") => 30,
        Some("TiB" | "PiB" | "EiB") => {
            assert!(n >= 1 << 40, "{n} shown as {shown:?}");
            assert!(parse_bytes(&shown).is_err(), "{shown:?} has no CLI unit");
            return;
        }
        other => panic!("{n} shown as {shown:?}: unit {other:?}"),
    };
    assert!(
        unit_shift == 0 || n >= 1 << unit_shift,
        "{n} shown as {shown:?}"
    );
    assert!(n >> unit_shift < 1024, "{n} shown as {shown:?}");
    let unit = 1u64 << unit_shift;
    match parse_bytes(&shown) {
        Ok(m) => {
            assert!(
                m.abs_diff(n) <= unit / 2,
                "{n} shown as {shown:?} reads as {m}"
            );
            if n % unit == 0 {
                assert_eq!(m, n, "{shown:?}");
            }
        }
        Err(_) => assert!(
            shown.contains('.') && n % unit != 0,
            "{n} shown as {shown:?} is refused"
        ),
    }

    let count = format_count(n);
    assert_eq!(count.replace(',', ""), n.to_string());
    let groups: Vec<&str> = count.split(',').collect();
    assert!((1..=3).contains(&groups[0].len()), "{count}");
    assert!(groups[1..].iter().all(|g| g.len() == 3), "{count}");
}
