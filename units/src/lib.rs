//! Sizes and durations as the `ringcast` and `loadgen` command lines write them, so both tools
//! accept the same forms: sizes in bytesize's syntax (`64`, `64KiB`, `1MiB`, `2 MB`), durations
//! in humantime's (`30s`, `500ms`, `2m`) or a bare, possibly fractional, number of seconds.

use std::time::Duration;

/// Parses a byte size: a bare number means bytes; `KiB`, `MiB`, `GiB` are powers of 1024,
/// `KB`, `MB`, `GB` powers of 1000.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|err| format!("`{text}` is not a size (examples: 64, 64KiB, 1MiB): {err}"))?;
    usize::try_from(size.as_u64()).map_err(|_| format!("size `{text}` is too large"))
}

/// Parses a duration: `30s`, `500ms`, `250us`, `2m`, `1h 30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("duration `{text}` is out of range"));
    }
    humantime::parse_duration(text)
        .map_err(|err| format!("`{text}` is not a duration (examples: 10, 30s, 500ms): {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2 MB"), Ok(2_000_000));
    }

    #[test]
    fn sizes_refuse_garbage() {
        assert!(parse_size("").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn durations_refuse_garbage() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("10 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
