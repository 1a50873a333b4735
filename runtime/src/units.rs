//! Byte sizes for people: `1.5 MiB` out, `256K`/`256KiB`/`262144` in; rates such as `4MiB/s`
//! or `500kB/s` in ([`parse_rate`]).

/// Formats `bytes` with binary units: `999 B`, `1.00 KiB`, `15.3 MiB`, `1.50 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value.fract() == 0.0 {
        0
    } else if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// Formats `n` with thousands separators: `1,557,057`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parses a size such as `262144`, `256K`, `256KiB`, `1M`, `1MiB` (binary units; case-insensitive).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 262144, 256K or 1MiB)"))?;
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "`{text}` is not a whole number (try 1536K for 1.5M)"
        ));
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("`{text}` has an unknown unit (use K, M or G)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parses a rate limit in bytes per second: `4MiB/s`, `500kB/s`, `500KiB/s`, `1M`, `1.5MiB`,
/// `262144`. `0` means no limit (`None`). Units are case-insensitive and `/s` is optional;
/// `kB`, `MB`, `GB` are decimal (1000), `KiB`, `MiB`, `GiB` binary (1024), and a bare `K`, `M`,
/// `G` is binary, as for [`parse_bytes`] (and aria2 and curl). A `b` is a byte, never a bit.
/// A fraction is rounded down to whole bytes.
pub fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    const HINT: &str = "try 4MiB/s, 500kB/s, 262144, or 0 for no limit";
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!(
            "`{text}`: a rate cannot be negative (0 means no limit)"
        ));
    }
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("/s").unwrap_or(&lower);
    let split = body
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(format!("`{text}` is not a rate ({HINT})"));
    }
    let unit_bytes: u128 = match unit.trim() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit (kB, MB, GB are 1000-based; K, KiB, M, MiB, G, GiB \
                 1024-based; {HINT})"
            ));
        }
    };
    let too_large = || format!("`{text}` is too large");
    // Whole part and fraction as exact integers: value = (whole.fraction) * unit, rounded down.
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(too_large());
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| too_large())?
    };
    let scale = 10u128.pow(
        u32::try_from(fraction.len())
            .map_err(|_| too_large())?
            .min(30),
    );
    let bytes = mantissa.checked_mul(unit_bytes).ok_or_else(too_large)? / scale;
    let bytes = u64::try_from(bytes).map_err(|_| too_large())?;
    if bytes == 0 && mantissa != 0 {
        return Err(format!("`{text}` is less than a byte per second"));
    }
    Ok((bytes > 0).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        // Proves the unit boundaries and precision people see in `bt info`.
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(1536), "1.50 KiB");
        assert_eq!(format_bytes(1_557_057), "1.48 MiB");
        assert_eq!(format_bytes(300 << 20), "300 MiB");
        assert_eq!(format_count(1_557_057), "1,557,057");
        assert_eq!(format_count(999), "999");
    }

    #[test]
    fn parses_sizes() {
        // Proves the accepted spellings of a piece length, and that junk is refused.
        assert_eq!(parse_bytes("262144"), Ok(262_144));
        assert_eq!(parse_bytes("256K"), Ok(262_144));
        assert_eq!(parse_bytes("256kib"), Ok(262_144));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert!(parse_bytes("1.5M").is_err());
        assert!(parse_bytes("K").is_err());
        assert!(parse_bytes("99999999999999G").is_err());
    }

    #[test]
    fn parses_rates() {
        // Proves the spellings of a rate limit users type, decimal against binary units as
        // written, 0 as no limit, and that junk, negatives and overflow are refused with a reason.
        assert_eq!(parse_rate("4MiB/s"), Ok(Some(4 << 20)));
        assert_eq!(parse_rate("500kB/s"), Ok(Some(500_000)));
        assert_eq!(parse_rate("500KiB/s"), Ok(Some(500 << 10)));
        assert_eq!(parse_rate("500kib"), Ok(Some(500 << 10)));
        assert_eq!(parse_rate("500 KB/S"), Ok(Some(500_000)));
        assert_eq!(parse_rate("2MB"), Ok(Some(2_000_000)));
        assert_eq!(parse_rate("1M"), Ok(Some(1 << 20)));
        assert_eq!(parse_rate("1g/s"), Ok(Some(1 << 30)));
        assert_eq!(parse_rate("1.5MiB/s"), Ok(Some(3 << 19)));
        assert_eq!(parse_rate("0.5kB"), Ok(Some(500)));
        assert_eq!(parse_rate("262144"), Ok(Some(262_144)));
        assert_eq!(parse_rate("262144B/s"), Ok(Some(262_144)));
        assert_eq!(parse_rate("0"), Ok(None));
        assert_eq!(parse_rate("0MiB/s"), Ok(None));
        assert_eq!(parse_rate("0.0"), Ok(None));
        let err = |t: &str| parse_rate(t).expect_err(t);
        assert!(err("fast").contains("not a rate"), "{}", err("fast"));
        assert!(err("-1").contains("negative"), "{}", err("-1"));
        assert!(err("99999999999GiB/s").contains("too large"));
        assert!(err("18446744073709551616").contains("too large"));
        assert!(err("1234567890123456789012345678901234567890").contains("too large"));
        assert!(err("5Xb/s").contains("unknown unit"));
        assert!(err("MiB/s").contains("not a rate"));
        assert!(err("1.2.3M").contains("not a rate"));
        assert!(err("0.1").contains("less than a byte"));
        assert!(err("").contains("not a rate"));
        assert_eq!(parse_rate("18446744073709551615"), Ok(Some(u64::MAX)));
    }
}
