//! latency.hgrm: the percentile spectrum as wrk2 prints it (values in milliseconds), which
//! HdrHistogram's plotter reads.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Renders `histogram` (ns) as a wrk2-style percentile distribution.
pub fn render(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in histogram.iter_quantiles(1) {
        total += step.count_since_last_iteration();
        let quantile = step.quantile_iterated_to();
        let value_ms = step.value_iterated_to() as f64 / 1e6;
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value_ms:>12.3} {quantile:>14.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(out, "{value_ms:>12.3} {quantile:>14.12} {total:>10}",);
        }
    }
    let mean = histogram.mean() / 1e6;
    let stdev = histogram.stdev() / 1e6;
    let max = histogram.max() as f64 / 1e6;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        histogram.len()
    );
    let buckets = histogram.buckets();
    let _ = writeln!(
        out,
        "#[Buckets = {buckets:>12}, SubBuckets     = {:>12}]",
        histogram.distinct_values()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
