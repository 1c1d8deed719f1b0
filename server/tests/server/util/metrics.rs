//! Reads the server's Prometheus text exposition (`GET /metrics`) into samples (over TLS when
//! `RINGCAST_TEST_TLS=1`, as every `http` request).

use std::net::SocketAddr;

use super::http;

/// One sample line: `name{labels} value`.
#[derive(Debug)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    /// Sample value.
    pub value: f64,
}

/// All samples of the server's `/metrics` page.
pub async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let response = http::get(addr, "/metrics", &[]).await;
    assert_eq!(response.status, 200, "GET /metrics");
    parse_page(&response.body_text())
}

/// The samples of a `/metrics` page.
pub fn parse_page(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Sum of every sample of metric `name` (over all label sets).
pub fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// The open-connections gauge of every core, as (core label, value), sorted by core.
pub fn connections_per_core(samples: &[Sample]) -> Vec<(String, f64)> {
    let mut per_core: Vec<(String, f64)> = samples
        .iter()
        .filter(|s| s.name == CONNECTIONS_GAUGE)
        .filter_map(|s| Some((s.label("core")?.to_owned(), s.value)))
        .collect();
    per_core.sort_by(|a, b| a.0.cmp(&b.0));
    per_core
}

/// Name of the per-core gauge of open WebSocket connections.
pub const CONNECTIONS_GAUGE: &str = "ringcast_connections";
