//! The report's `results` from what the workers recorded: deliveries against what was
//! expected (from who connected, room by room and URL by URL), the reasons a run is not valid,
//! the histograms, the thresholds.

use std::collections::BTreeMap;
use std::sync::mpsc;

use hdrhistogram::Histogram;

use super::phases::Phases;
use super::probe::own_cpu_seconds;
use crate::plan::{format_ns, url_of_connection, ConnectionSpec, Plan, Scenario};
use crate::report::{
    self, check_thresholds, encode_histogram, HistogramSummary, PublisherLoss, Results,
};
use crate::stats::{expected_by_class, ChurnTotals, ClassTotals, RunTotals};

/// Who connected, counted from the connections' indices.
pub struct ConnectedCounts {
    /// Non-stalled connected receivers per room (publishers receive too).
    per_room: Vec<u64>,
    /// The same per room and URL: `[room][url]`.
    per_room_url: Vec<Vec<u64>>,
    /// Connections (stalled ones included) per URL.
    per_url: Vec<u64>,
}

/// Counts the connections reported on `connected`.
pub fn count_connected(scenario: &Scenario, connected: &mpsc::Receiver<u64>) -> ConnectedCounts {
    let rooms = scenario.rooms.max(1) as usize;
    let urls = scenario.urls.len().max(1);
    let mut counts = ConnectedCounts {
        per_room: vec![0; rooms],
        per_room_url: vec![vec![0; urls]; rooms],
        per_url: vec![0; urls],
    };
    for index in connected.try_iter() {
        let spec = ConnectionSpec::of(scenario, index);
        let url = url_of_connection(index, urls);
        counts.per_url[url] += 1;
        if !spec.stalled {
            counts.per_room[spec.room as usize] += 1;
            counts.per_room_url[spec.room as usize][url] += 1;
        }
    }
    counts
}

/// The report's `nodes` section, or `None` with a single URL.
fn node_results(
    scenario: &Scenario,
    totals: &RunTotals,
    connected: &ConnectedCounts,
) -> Option<report::NodeResults> {
    let nodes = totals.nodes.as_ref()?;
    let urls = scenario.urls.len();
    let mut per_url: Vec<report::UrlConnections> = scenario
        .urls
        .iter()
        .enumerate()
        .map(|(url, text)| report::UrlConnections {
            url: text.clone(),
            target: 0,
            publishers: 0,
            ok: connected.per_url.get(url).copied().unwrap_or(0),
        })
        .collect();
    for index in 0..scenario.connections() {
        let entry = &mut per_url[url_of_connection(index, urls)];
        entry.target += 1;
        entry.publishers += u64::from(index >= scenario.subscribers);
    }
    let (same_expected, cross_expected) = expected_by_class(
        scenario,
        &totals.sent_measured_by_publisher,
        &connected.per_room_url,
    );
    let class = |expected: u64, totals: &ClassTotals| report::NodeClassResults {
        expected,
        delivered: totals.delivered,
        lost: expected.saturating_sub(totals.delivered),
        latency_ns: HistogramSummary::of(&totals.latency),
    };
    Some(report::NodeResults {
        urls: per_url,
        same_node: class(same_expected, &nodes.same),
        cross_node: class(cross_expected, &nodes.cross),
    })
}
/// Measured deliveries against those expected: each publisher's measured sends times the
/// connected, non-stalled receivers of its room.
struct Deliveries {
    /// Deliveries expected.
    expected: u64,
    /// Deliveries seen (first copies at non-stalled receivers).
    delivered: u64,
    /// The publishers some of whose deliveries are missing.
    publishers_with_loss: Vec<PublisherLoss>,
}

/// Counts the measured deliveries per publisher against `per_room`, the non-stalled receivers
/// connected in each room.
fn deliveries(scenario: &Scenario, totals: &RunTotals, per_room: &[u64]) -> Deliveries {
    let rooms = scenario.rooms.max(1);
    let mut expected = 0u64;
    let mut delivered = 0u64;
    let mut publishers_with_loss = Vec::new();
    for (publisher, sent) in totals.sent_measured_by_publisher.iter().enumerate() {
        let publisher_expected = sent * per_room[(publisher as u64 % rooms) as usize];
        let publisher_delivered = totals
            .delivered_by_publisher
            .get(publisher)
            .copied()
            .unwrap_or(0);
        expected += publisher_expected;
        delivered += publisher_delivered;
        if publisher_delivered < publisher_expected {
            publishers_with_loss.push(PublisherLoss {
                publisher: publisher as u32,
                expected: publisher_expected,
                delivered: publisher_delivered,
            });
        }
    }
    Deliveries {
        expected,
        delivered,
        publishers_with_loss,
    }
}

/// Why the run is not valid, in the order the summary prints them; empty when it is.
fn invalid_reasons(
    scenario: &Scenario,
    totals: &RunTotals,
    aborted: bool,
    send_lag: &HistogramSummary,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if aborted {
        reasons.push(abort_reason(scenario, totals));
    }
    let failed = totals.connect_failed();
    if failed > 0 {
        reasons.push(format!(
            "{failed} of {} connections failed",
            scenario.connections()
        ));
    }
    if totals.disconnected > 0 {
        reasons.push(format!(
            "{} connections were closed during the run",
            totals.disconnected
        ));
    }
    let reconnect_failed = totals.churn.reconnect_failed();
    if reconnect_failed > 0 {
        reasons.push(format!(
            "{reconnect_failed} reconnects failed (subscribers stayed away longer than --churn said)"
        ));
    }
    if let Some(example) = &totals.churn.malformed_example {
        reasons.push(format!(
            "{} first messages broke the recovery contract; the first: {example}",
            totals.churn.first_messages.malformed
        ));
    }
    if let Some(example) = &totals.protocol_error_example {
        reasons.push(format!(
            "{} protocol errors; the first: {example}",
            totals.protocol_errors
        ));
    }
    if let Some(p99) = send_lag
        .p99
        .filter(|p99| *p99 as f64 > scenario.max_send_lag_s * 1e9)
    {
        reasons.push(format!(
            "publishers fell behind: send lag p99 {} > --max-send-lag {}",
            format_ns(p99 as f64),
            format_ns(scenario.max_send_lag_s * 1e9)
        ));
    }
    if scenario.publishers > 0 && totals.sent_measured() == 0 {
        reasons.push("no message was sent in the measured window".to_string());
    }
    reasons
}

/// The reason of a run abandoned because no connection succeeded, with each failure's count
/// and first message.
fn abort_reason(scenario: &Scenario, totals: &RunTotals) -> String {
    let reasons: Vec<String> = totals
        .connect_failure_examples
        .iter()
        .map(|(key, example)| {
            let count = totals.connect_failures.get(key).copied().unwrap_or(0);
            format!("{count} x {example}")
        })
        .collect();
    format!(
        "aborted: no connection succeeded within --connect-timeout {} ({})",
        format_ns(scenario.connect_timeout_s * 1e9),
        if reasons.is_empty() {
            "no attempt finished".to_string()
        } else {
            reasons.join(", ")
        }
    )
}

/// The report's `churn` section from the workers' counts.
fn churn_results(churn: &ChurnTotals) -> report::ChurnResults {
    let first = churn.first_messages;
    report::ChurnResults {
        left: churn.left,
        reconnected: churn.reconnected,
        reconnect_failed: churn.reconnect_failed(),
        reconnect_failures: churn.reconnect_failures.clone(),
        first_messages: report::FirstMessageCounts {
            position: first.position,
            recovered: first.recovered,
            reset: first.reset,
            none: first.none,
            malformed: first.malformed,
        },
        malformed_example: churn.malformed_example.clone(),
        first_replay_ns: HistogramSummary::of(&churn.first_replay),
    }
}

/// The run's histograms, encoded for report.json (the node classes' with several URLs, the
/// first replay's with `churned`).
fn encoded_histograms(
    totals: &RunTotals,
    churned: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut histograms = BTreeMap::new();
    for (name, histogram) in [
        ("latency", &totals.latency),
        ("latency_uncorrected", &totals.latency_uncorrected),
        ("connect", &totals.connect),
        ("send_lag", &totals.send_lag),
    ]
    .into_iter()
    .chain(
        report::CONNECT_STEP_HISTOGRAMS
            .into_iter()
            .zip(step_histograms(totals)),
    ) {
        histograms.insert(name.to_string(), encode_histogram(histogram)?);
    }
    if let Some(nodes) = &totals.nodes {
        for (name, class) in report::NODE_HISTOGRAMS
            .iter()
            .zip([&nodes.same, &nodes.cross])
        {
            histograms.insert(name.to_string(), encode_histogram(&class.latency)?);
        }
    }
    if churned {
        histograms.insert(
            report::FIRST_REPLAY_HISTOGRAM.to_string(),
            encode_histogram(&totals.churn.first_replay)?,
        );
    }
    Ok(histograms)
}

/// The connect steps' histograms, in `report::CONNECT_STEP_HISTOGRAMS` order.
fn step_histograms(totals: &RunTotals) -> [&Histogram<u64>; 3] {
    let steps = &totals.connect_steps;
    [&steps.tcp, &steps.tls, &steps.upgrade]
}

/// Turns merged totals into the report's results, including validity and thresholds.
pub fn results_of(
    plan: &Plan,
    totals: &RunTotals,
    connected: &ConnectedCounts,
    phases: &Phases,
    busiest_window_second: Option<f64>,
) -> anyhow::Result<Results> {
    let scenario = &plan.scenario;
    let Deliveries {
        expected,
        delivered,
        publishers_with_loss,
    } = deliveries(scenario, totals, &connected.per_room);
    let measured_seconds = scenario.duration_s;
    let (user_s, system_s) = own_cpu_seconds();
    let window_percent = match phases.cpu_at_window {
        (Some(start), Some(end)) if measured_seconds > 0.0 => {
            Some((end - start) * 100.0 / measured_seconds)
        }
        _ => None,
    };
    let send_lag = HistogramSummary::of(&totals.send_lag);
    let invalid_reasons = invalid_reasons(scenario, totals, phases.aborted, &send_lag);
    let churned = scenario.churn.is_some() || scenario.recover;
    let mut results = Results {
        valid: invalid_reasons.is_empty(),
        invalid_reasons,
        connections: report::ConnectionResults {
            target: scenario.connections(),
            ok: totals.connected,
            failed: totals.connect_failed(),
            failures: totals.connect_failures.clone(),
            disconnected: totals.disconnected,
        },
        sent: totals.sent,
        sent_measured: totals.sent_measured(),
        expected,
        delivered,
        lost: totals.lost(scenario.rooms),
        duplicated: totals.duplicated,
        reordered: totals.reordered,
        delivery_rate: (expected > 0).then(|| delivered as f64 / expected as f64),
        foreign: totals.foreign,
        delivered_per_sec: delivered as f64 / measured_seconds,
        delivered_mb_per_sec: totals.delivered_bytes as f64 / 1e6 / measured_seconds,
        measured_seconds,
        latency_ns: HistogramSummary::of(&totals.latency),
        latency_uncorrected_ns: HistogramSummary::of(&totals.latency_uncorrected),
        connect_ns: HistogramSummary::of(&totals.connect),
        connect_steps: Some(report::ConnectStepResults::of(step_histograms(totals))),
        send_lag_ns: send_lag,
        stalled: report::StalledResults {
            connections: totals.stalled_connected,
            closed_by_server: totals.stalled_closed_by_server,
        },
        protocol_errors: totals.protocol_errors,
        publishers_with_loss,
        loadgen_cpu: report::LoadgenCpu {
            user_s,
            system_s,
            window_percent,
            // A window shorter than one whole second has no busiest second: its mean.
            max_second_percent: busiest_window_second.or(window_percent),
        },
        server: phases.server.results(totals.connected, delivered),
        servers: Vec::new(),
        nodes: node_results(scenario, totals, connected),
        churn: churned.then(|| churn_results(&totals.churn)),
        wire: Some(report::WireResults::of(
            scenario.deflate,
            totals.deflate_connected,
            totals.delivered_bytes,
            totals.delivered_wire_bytes,
            delivered,
        )),
        thresholds: Vec::new(),
        histograms: encoded_histograms(totals, churned)?,
    };
    results.thresholds = check_thresholds(&plan.thresholds, &results);
    Ok(results)
}
