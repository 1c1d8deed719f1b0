//! Parsing of the human-friendly values the CLI accepts: durations (`10`, `10s`, `500ms`)
//! and byte sizes (`64`, `16KiB`).

use std::time::Duration;

/// Parses a duration: a bare number means seconds; suffixes `ns`, `us`, `ms`, `s`, `m`, `h`.
/// Fractions are allowed (`1.5s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 10, 10s, 500ms)"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}`")),
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration `{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a byte size: a bare number means bytes; suffixes `B`, `KiB`, `MiB`, `KB`, `MB`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 64, 16KiB)"))?;
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1024,
        "MiB" | "M" => 1024 * 1024,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// Formats nanoseconds for people with 3 significant digits: `812ns`, `45.2µs`, `3.10ms`,
/// `1.25s`. Reports keep exact nanoseconds; this is for tables, summaries and live lines.
pub fn format_ns(ns: f64) -> String {
    if !ns.is_finite() {
        return "n/a".to_string();
    }
    // Round first, so 999.96 us becomes 1.00ms rather than 1000us.
    let rounded = round_to_significant(ns, 3);
    let (scale, unit) = [(1e9, "s"), (1e6, "ms"), (1e3, "µs")]
        .into_iter()
        .find(|(scale, _)| rounded.abs() >= *scale)
        .unwrap_or((1.0, "ns"));
    let value = rounded / scale;
    let decimals = match value.abs() {
        _ if unit == "ns" => 0,
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.decimals$}{unit}")
}

/// `value` rounded to `digits` significant digits.
fn round_to_significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 {
        return 0.0;
    }
    let step = 10f64.powi(value.abs().log10().floor() as i32 + 1 - digits);
    (value / step).round() * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_documented_forms() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_accept_the_documented_forms() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("16XB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn nanoseconds_print_with_three_significant_digits() {
        assert_eq!(format_ns(812.0), "812ns");
        assert_eq!(format_ns(45_230.0), "45.2µs");
        assert_eq!(format_ns(123_456.0), "123µs");
        assert_eq!(format_ns(3_100_000.0), "3.10ms");
        assert_eq!(format_ns(12_345_678.0), "12.3ms");
        assert_eq!(format_ns(999_960.0), "1.00ms");
        assert_eq!(format_ns(1_250_000_000.0), "1.25s");
        assert_eq!(format_ns(0.0), "0ns");
        assert_eq!(format_ns(f64::NAN), "n/a");
    }
}
