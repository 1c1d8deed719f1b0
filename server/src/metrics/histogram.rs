//! Per-core histograms with power-of-two buckets, cheap enough for the hot path: a sample is a
//! leading-zeros count and two uncontended relaxed stores.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A histogram of one core with `N` buckets: bucket `i < N - 1` counts samples up to
/// `BASE * 2^i` units, the last one the rest (+Inf). Finding the bucket is one leading-zeros
/// count, and only the owning core writes, so a sample is uncontended relaxed stores.
#[derive(Debug)]
pub struct Log2Histogram<const N: usize, const BASE: u64> {
    /// Samples per bucket (not cumulative).
    buckets: [AtomicU64; N],
    /// Sum of the samples, in units.
    sum: AtomicU64,
}

impl<const N: usize, const BASE: u64> Default for Log2Histogram<N, BASE> {
    fn default() -> Self {
        Log2Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize, const BASE: u64> Log2Histogram<N, BASE> {
    /// Adds one sample of `value` units.
    pub fn record(&self, value: u64) {
        bump(&self.buckets[bucket_index::<N, BASE>(value)], 1);
        bump(&self.sum, value);
    }

    /// Adds a batch of samples counted apart.
    pub fn add(&self, batch: &Log2Counts<N, BASE>) {
        for (bucket, &count) in self.buckets.iter().zip(&batch.buckets) {
            if count > 0 {
                bump(bucket, count);
            }
        }
        bump(&self.sum, batch.sum);
    }

    /// Adds this core's buckets (not cumulative) and sum into `merged`.
    fn merge_into(&self, merged: &mut Log2Counts<N, BASE>) {
        for (total, bucket) in merged.buckets.iter_mut().zip(&self.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
        merged.sum = merged.sum.wrapping_add(self.sum.load(Ordering::Relaxed));
    }
}

/// Adds `value` to a counter only its core writes: a load and a store instead of the locked
/// read-modify-write of `fetch_add`.
fn bump(counter: &AtomicU64, value: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(value),
        Ordering::Relaxed,
    );
}

/// The bucket of `value` units: ceil(log2(ceil(value / BASE))), the first whose bound is
/// >= value, or the last (+Inf).
fn bucket_index<const N: usize, const BASE: u64>(value: u64) -> usize {
    let scaled = value.div_ceil(BASE);
    ((u64::BITS - scaled.saturating_sub(1).leading_zeros()) as usize).min(N - 1)
}

/// Plain counts of a [`Log2Histogram`]: one batch of writes before it is added to the core's
/// histogram, or every core's histogram merged at scrape.
#[derive(Debug)]
pub struct Log2Counts<const N: usize, const BASE: u64> {
    /// Samples per bucket (not cumulative).
    buckets: [u64; N],
    /// Sum of the samples, in units.
    sum: u64,
}

impl<const N: usize, const BASE: u64> Default for Log2Counts<N, BASE> {
    fn default() -> Self {
        Log2Counts {
            buckets: [0; N],
            sum: 0,
        }
    }
}

impl<const N: usize, const BASE: u64> Log2Counts<N, BASE> {
    /// Adds one sample of `value` units.
    pub fn record(&mut self, value: u64) {
        self.buckets[bucket_index::<N, BASE>(value)] += 1;
        self.sum = self.sum.wrapping_add(value);
    }

    /// The histograms of several cores merged.
    pub fn merged<'a>(histograms: impl IntoIterator<Item = &'a Log2Histogram<N, BASE>>) -> Self {
        let mut merged = Log2Counts::default();
        for histogram in histograms {
            histogram.merge_into(&mut merged);
        }
        merged
    }

    /// Encodes it with bucket bounds `BASE * 2^i / per_unit` (`per_unit` converts units to the
    /// metric's unit, e.g. 1e9 nanoseconds to seconds; dividing keeps the bounds' decimal
    /// text exact).
    pub fn encode(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        per_unit: f64,
    ) -> Result<(), std::fmt::Error> {
        // prometheus-client takes the counts per bucket and writes them cumulated.
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(index, &count)| {
                let bound = if index + 1 == N {
                    f64::INFINITY
                } else {
                    (BASE << index) as f64 / per_unit
                };
                (bound, count)
            })
            .collect();
        let count = self.buckets.iter().sum();
        encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(self.sum as f64 / per_unit, count, &buckets, None)
    }
}
