//! Parsers for human-friendly sizes (`64KiB`, `1MiB`) and durations (`30s`, `500ms`) used by
//! the command line.

use std::time::Duration;

/// Parses a byte size: a whole number with an optional unit. `K`/`KiB`, `M`/`MiB`, `G`/`GiB`
/// are powers of 1024; `KB`, `MB`, `GB` are powers of 1000; `B` or no unit means bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB, GiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// Parses a duration: a whole number with a unit `ms`, `s`, `m` or `h` (no unit = seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown duration unit `{other}` (use ms, s, m, h)")),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

/// Splits `"64KiB"` into `(64, "KiB")`, refusing empty or non-numeric prefixes.
fn split_number(text: &str) -> Result<(u64, &str), String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits_end == 0 {
        return Err(format!("`{text}` does not start with a number"));
    }
    let number = trimmed[..digits_end]
        .parse::<u64>()
        .map_err(|err| format!("`{text}`: {err}"))?;
    Ok((number, trimmed[digits_end..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2 MB"), Ok(2_000_000));
    }

    #[test]
    fn sizes_refuse_garbage() {
        assert!(parse_size("").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn durations_refuse_garbage() {
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("10 fortnights").is_err());
        assert!(parse_duration("1.5s").is_err());
    }
}
