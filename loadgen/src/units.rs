//! The human-friendly values the CLI reads and prints: durations (`10`, `10s`, `500ms`,
//! humantime's syntax; a bare number is seconds), byte sizes (`64`, `16KiB`, bytesize's syntax)
//! and nanoseconds printed for people.

use std::time::Duration;

/// Parses a duration: `10s`, `500ms`, `250us`, `2m`, or a bare (possibly fractional) number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("duration `{text}` is out of range"));
    }
    humantime::parse_duration(text)
        .map_err(|err| format!("`{text}` is not a duration (examples: 10, 10s, 500ms): {err}"))
}

/// Parses a byte size: a bare number means bytes; units `KiB`, `MiB` (1024) or `KB`, `MB` (1000).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|err| format!("`{text}` is not a size (examples: 64, 16KiB): {err}"))?;
    usize::try_from(size.as_u64()).map_err(|_| format!("size `{text}` is too large"))
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
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_accept_the_documented_forms() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("16XB").is_err());
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
