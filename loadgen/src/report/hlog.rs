//! latency.hlog: HdrHistogram interval log (one interval per second, one tag per histogram),
//! readable by HistogramLogProcessor and hdrhistogram's IntervalLogIterator. Each second is
//! serialised as it ends, so a long run holds kilobytes, not a histogram per second.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// The log text being built.
pub struct HlogBuffer {
    /// Log text so far.
    text: Vec<u8>,
    /// Compressing V2 serialiser (the format HdrHistogram's Java tools expect in logs).
    serializer: V2DeflateSerializer,
}

impl HlogBuffer {
    /// Starts a log whose timestamps count from `start`.
    pub fn new(start: SystemTime) -> anyhow::Result<HlogBuffer> {
        let mut buffer = HlogBuffer {
            text: Vec::new(),
            serializer: V2DeflateSerializer::new(),
        };
        IntervalLogWriterBuilder::new()
            .add_comment("ringcast loadgen latency log; values in nanoseconds; tags: latency (recv - intended send), latency_uncorrected (recv - actual send), send_lag (actual - intended send)")
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut buffer.text, &mut buffer.serializer)
            .context("writing hlog header")?;
        Ok(buffer)
    }

    /// Appends one interval per (tag, histogram) starting `offset` after the log start.
    pub fn push(
        &mut self,
        offset: Duration,
        length: Duration,
        histograms: &[(&str, &Histogram<u64>)],
    ) -> anyhow::Result<()> {
        let mut writer = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.text, &mut self.serializer)
            .context("continuing hlog")?;
        for (tag, histogram) in histograms {
            writer
                .write_histogram(*histogram, offset, length, Tag::new(tag))
                .map_err(|e| anyhow::anyhow!("writing hlog interval: {e}"))?;
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
