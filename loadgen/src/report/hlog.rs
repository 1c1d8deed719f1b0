//! latency.hlog: HdrHistogram interval log (format version 1.3, as HdrHistogram's Java
//! `HistogramLogWriter` writes it), one interval per second, readable by Java's
//! `HistogramLogProcessor` (with and without `-tag`) and hdrhistogram's `IntervalLogIterator`.
//! Each second is serialised (compressed V2, `HISTFAAA...`) as it ends, so a long run holds
//! kilobytes. The untagged series is report.json's `latency` (the measured messages, by the
//! second they arrived in); the tagged series hold every message, warm-up and drain included.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Histogram values are nanoseconds; `Interval_Max` is written divided by this (ms), as
/// HdrHistogram's writers scale it (`max / ratio`).
pub const MAX_VALUE_DIVISOR: f64 = 1e6;

/// The version line HdrHistogram's writers start a log with.
pub const VERSION_LINE: &str = "#[Histogram log format version 1.3]";

/// The CSV legend line that follows the header.
pub const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";

/// The tagged series and what they hold (the untagged one is the measured latency).
pub const TAGS: &[(&str, &str)] = &[
    ("latency_all", "recv - intended send, every message"),
    ("latency_uncorrected", "recv - actual send, every message"),
    ("send_lag", "actual - intended send, every message sent"),
];

/// The log text being built.
pub struct HlogBuffer {
    /// Log text so far.
    text: Vec<u8>,
    /// Compressing V2 serialiser (the format HdrHistogram's Java tools expect in logs).
    serializer: V2DeflateSerializer,
}

/// One interval's histograms: `None` for the untagged (main) series, else the tag.
pub type Series<'a> = (Option<&'a str>, &'a Histogram<u64>);

impl HlogBuffer {
    /// Starts a log whose timestamps count from `start`.
    pub fn new(start: SystemTime) -> anyhow::Result<HlogBuffer> {
        Self::with_comment(start, "")
    }

    /// Starts a log with an extra comment line (e.g. what a merged log holds).
    pub fn with_comment(start: SystemTime, comment: &str) -> anyhow::Result<HlogBuffer> {
        let mut buffer = HlogBuffer {
            text: Vec::new(),
            serializer: V2DeflateSerializer::new(),
        };
        let tags: Vec<String> = TAGS
            .iter()
            .map(|(tag, meaning)| format!("Tag={tag}: {meaning}"))
            .collect();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(&format!(
                "[ringcast loadgen {} latency log]",
                env!("CARGO_PKG_VERSION")
            ))
            .add_comment(&VERSION_LINE[1..])
            .add_comment(&format!(
                "Values in nanoseconds; Interval_Max in milliseconds (max / {MAX_VALUE_DIVISOR:.0}, \
                 the ns->ms ratio; HistogramLogProcessor's default -outputValueUnitRatio 1e6 prints ms)"
            ))
            .add_comment(
                "Untagged: recv - intended send of the measured messages (report.json's latency), by second of arrival",
            )
            .add_comment(&tags.join("; "));
        if !comment.is_empty() {
            builder.add_comment(comment);
        }
        builder
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(MAX_VALUE_DIVISOR)
            .begin_log_with(&mut buffer.text, &mut buffer.serializer)
            .context("writing hlog header")?;
        buffer.text.extend_from_slice(LEGEND.as_bytes());
        buffer.text.push(b'\n');
        Ok(buffer)
    }

    /// Appends one interval per series starting `offset` after the log start.
    pub fn push(
        &mut self,
        offset: Duration,
        length: Duration,
        series: &[Series<'_>],
    ) -> anyhow::Result<()> {
        use std::io::Write;
        for (tag, histogram) in series {
            let mut bytes = Vec::new();
            self.serializer
                .serialize(histogram, &mut bytes)
                .map_err(|e| anyhow::anyhow!("serialising hlog interval: {e}"))?;
            if let Some(tag) = tag {
                anyhow::ensure!(
                    Tag::new(tag).is_some(),
                    "hlog tag `{tag}` holds a separator"
                );
                write!(self.text, "Tag={tag},")?;
            }
            // The same line IntervalLogWriter writes; done here because the crate's writer
            // repeats its `#[MaxValueDivisor]` header line each time it is resumed.
            writeln!(
                self.text,
                "{:.3},{:.3},{:.3},{}",
                offset.as_secs_f64(),
                length.as_secs_f64(),
                histogram.max() as f64 / MAX_VALUE_DIVISOR,
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            )?;
        }
        Ok(())
    }

    /// Writes the log to `path`.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.text).with_context(|| format!("writing {}", path.display()))
    }

    /// The log text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}
