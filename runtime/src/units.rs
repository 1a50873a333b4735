//! Byte sizes for people: `1.5 MiB` out, `256K`/`256KiB`/`262144` in.

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
}
