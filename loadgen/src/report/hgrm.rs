//! latency.hgrm: the percentile spectrum as wrk2 and HdrHistogram's
//! `outputPercentileDistribution` (HistogramLogProcessor's `.hgrm`) print it: values in
//! milliseconds (ns / 1e6), 5 percentile ticks per half distance, the footer's `SubBuckets` the
//! sub-bucket count (2048 at 3 significant digits). HdrHistogram's plotter reads it.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance, as wrk2 and HistogramLogProcessor print by default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Values are ns; printed divided by this (ms).
pub const OUTPUT_VALUE_UNIT_RATIO: f64 = 1e6;

/// HdrHistogram's `subBucketCount`: 2^ceil(log2(2 * 10^significant digits)).
pub fn sub_bucket_count(histogram: &Histogram<u64>) -> u64 {
    (2 * 10u64.pow(histogram.sigfig().into())).next_power_of_two()
}

/// The rows of HdrHistogram's `outputPercentileDistribution`: (value, percentile level in %,
/// count up to the value), computed as Java's `PercentileIterator` does (percent arithmetic,
/// `>=` on the level, several rows per value when it spans several ticks, a last row at 100%),
/// so the file is the one HistogramLogProcessor writes for the same histogram. (The crate's
/// `iter_quantiles` differs at exact tick boundaries: 0.3 x 26,400 = 7,920 counts.)
pub fn percentile_ticks(histogram: &Histogram<u64>, ticks_per_half: u32) -> Vec<(u64, f64, u64)> {
    let total_count = histogram.len();
    let mut rows = Vec::new();
    if total_count == 0 {
        return rows;
    }
    let mut level = 0.0f64;
    let mut total = 0u64;
    for step in histogram.iter_recorded() {
        total += step.count_at_value();
        let value = step.value_iterated_to();
        while 100.0 * total as f64 / total_count as f64 >= level {
            rows.push((value, level, total));
            // Java: ticks * 2^(floor(log2(100 / (100 - level))) + 1) steps to 100%.
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64 + 1;
            let reporting_ticks = i64::from(ticks_per_half) * 2f64.powi(halvings as i32) as i64;
            level += 100.0 / reporting_ticks as f64;
            if total >= total_count {
                rows.push((value, 100.0, total));
                return rows;
            }
        }
    }
    rows
}

/// `value` with `decimals` digits as Java's `%.Nf` prints it: the shortest decimal form of the
/// double rounded half up (Rust's `{:.N}` rounds the exact binary value, half to even, so
/// 0.9997802734375 would end in ...437 where Java and wrk2's files have ...438).
pub fn java_fixed(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return format!("{value}");
    }
    let repr = format!("{}", value.abs());
    let (int_part, frac_part) = repr.split_once('.').unwrap_or((&repr, ""));
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(
            frac_part
                .bytes()
                .chain(std::iter::repeat(b'0'))
                .take(decimals),
        )
        .collect();
    if frac_part
        .as_bytes()
        .get(decimals)
        .is_some_and(|d| *d >= b'5')
    {
        let mut at = digits.len();
        loop {
            if at == 0 {
                digits.insert(0, b'1');
                break;
            }
            at -= 1;
            if digits[at] == b'9' {
                digits[at] = b'0';
            } else {
                digits[at] += 1;
                break;
            }
        }
    }
    let split = digits.len() - decimals;
    let mut text = String::from_utf8_lossy(&digits[..split]).into_owned();
    if decimals > 0 {
        text.push('.');
        text.push_str(&String::from_utf8_lossy(&digits[split..]));
    }
    if value < 0.0 && digits.iter().any(|d| *d != b'0') {
        text.insert(0, '-');
    }
    text
}

/// Renders `histogram` (ns) as a wrk2-style percentile distribution.
pub fn render(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for (value, percentile, total) in percentile_ticks(histogram, TICKS_PER_HALF_DISTANCE) {
        let value_ms = java_fixed(value as f64 / OUTPUT_VALUE_UNIT_RATIO, 3);
        let quantile = percentile / 100.0;
        let quantile_text = java_fixed(quantile, 12);
        if percentile < 100.0 {
            let _ = writeln!(
                out,
                "{value_ms:>12} {quantile_text:>14} {total:>10} {:>14}",
                java_fixed(1.0 / (1.0 - quantile), 2)
            );
        } else {
            let _ = writeln!(out, "{value_ms:>12} {quantile_text:>14} {total:>10}",);
        }
    }
    let mean = java_fixed(histogram.mean() / OUTPUT_VALUE_UNIT_RATIO, 3);
    let stdev = java_fixed(histogram.stdev() / OUTPUT_VALUE_UNIT_RATIO, 3);
    let max = java_fixed(histogram.max() as f64 / OUTPUT_VALUE_UNIT_RATIO, 3);
    let _ = writeln!(out, "#[Mean    = {mean:>12}, StdDeviation   = {stdev:>12}]");
    let _ = writeln!(
        out,
        "#[Max     = {max:>12}, Total count    = {:>12}]",
        histogram.len()
    );
    let buckets = histogram.buckets();
    let _ = writeln!(
        out,
        "#[Buckets = {buckets:>12}, SubBuckets     = {:>12}]",
        sub_bucket_count(histogram)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_rounds_like_java() {
        assert_eq!(java_fixed(0.9997802734375, 12), "0.999780273438");
        assert_eq!(java_fixed(0.999926757812, 12), "0.999926757812");
        assert_eq!(java_fixed(45.679, 3), "45.679");
        assert_eq!(java_fixed(0.0, 12), "0.000000000000");
        assert_eq!(java_fixed(9.9996, 3), "10.000");
        assert_eq!(java_fixed(1.43, 2), "1.43");
        assert_eq!(java_fixed(-0.0004, 3), "0.000");
        assert_eq!(java_fixed(-1.25, 1), "-1.3");
        assert_eq!(java_fixed(27306.666666666668, 2), "27306.67");
    }

    #[test]
    fn spectrum_ends_at_the_maximum_with_the_total_count() {
        let mut histogram = crate::stats::new_histogram();
        for v in 1..=1000u64 {
            histogram.saturating_record(v * 1000);
        }
        let text = render(&histogram);
        assert!(text.contains("Total count    =         1000"));
        let last_value_line = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap();
        assert!(
            last_value_line.trim_start().starts_with("1.000"),
            "{last_value_line}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        // 5 ticks per half distance (1 gave 12 rows here), as wrk2 prints them.
        let rows = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("0."))
            .count();
        assert!(rows > 40, "{rows} rows");
    }
}
