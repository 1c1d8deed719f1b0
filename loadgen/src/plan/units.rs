//! Nanoseconds printed for people; the CLI's sizes and durations are parsed by
//! `ringcast-units`, shared with the server so both tools accept the same forms.

use std::time::Duration;

pub use ringcast_units::{parse_duration, parse_size};

/// `--churn EVERY:DOWNTIME`: how often each subscriber leaves and how long it stays away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Churn {
    /// Period of a subscriber's departures.
    pub every: Duration,
    /// Time away before reconnecting.
    pub downtime: Duration,
}

/// Parses `--churn EVERY:DOWNTIME` (`15s:2s`): both positive, the downtime shorter than the
/// period (a subscriber away for the whole period would never be connected).
pub fn parse_churn(text: &str) -> Result<Churn, String> {
    let (every, downtime) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not EVERY:DOWNTIME (e.g. 15s:2s)"))?;
    let every = parse_duration(every).map_err(|e| format!("EVERY `{every}`: {e}"))?;
    let downtime = parse_duration(downtime).map_err(|e| format!("DOWNTIME `{downtime}`: {e}"))?;
    if every.is_zero() || downtime.is_zero() {
        return Err(format!(
            "`{text}`: EVERY and DOWNTIME must both be positive"
        ));
    }
    if downtime >= every {
        return Err(format!(
            "`{text}`: DOWNTIME must be shorter than EVERY (a subscriber away for the whole period is never connected)"
        ));
    }
    Ok(Churn { every, downtime })
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
    fn churn_takes_a_period_and_a_shorter_downtime() {
        let churn = parse_churn("15s:2s").unwrap();
        assert_eq!(
            (churn.every, churn.downtime),
            (Duration::from_secs(15), Duration::from_secs(2))
        );
        assert_eq!(
            parse_churn("500ms:100ms").unwrap().downtime,
            Duration::from_millis(100)
        );
        for bad in [
            "15s", "15s:", ":2s", "0s:0s", "1s:0s", "2s:2s", "1s:5s", "x:1s", "1s:y",
        ] {
            assert!(parse_churn(bad).is_err(), "{bad}");
        }
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
