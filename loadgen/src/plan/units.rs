//! Nanoseconds printed for people; the CLI's sizes and durations are parsed by
//! `ringcast-units`, shared with the server so both tools accept the same forms.

pub use ringcast_units::{parse_duration, parse_size};

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
