//! `/metrics` is valid Prometheus text (parsed by the `prometheus-parse` crate) and has the
//! per-core counters, the histograms, the process metrics and the build info.

use prometheus_parse::{Scrape, Value};

use crate::util::{http, start_server, ws};

#[tokio::test]
async fn metrics_parse_and_have_the_new_series() {
    let server = start_server(&[]);
    let mut client = ws::connect(server.addr, "/ws/m").await;
    for n in 0..3 {
        ws::send_text(&mut client, &format!("m{n}")).await;
        assert_eq!(ws::next_text(&mut client).await, format!("m{n}"));
    }
    let response = http::get(server.addr, "/metrics", &[]).await;
    assert_eq!(response.status, 200);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.body_text();
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|err| panic!("unparsable exposition ({err}):\n{text}"));
    let samples = &scrape.samples;
    let find = |name: &'static str| samples.iter().filter(move |s| s.metric == name);
    let gauge = |name: &'static str| match find(name).next().map(|s| &s.value) {
        Some(Value::Gauge(value)) => *value,
        other => panic!("{name}: expected a gauge, got {other:?}"),
    };

    // Per-core counters, one series per core.
    let writes: Vec<_> = find("ringcast_writev_calls_total").collect();
    assert_eq!(writes.len(), 2, "one series per core");
    assert!(writes.iter().all(|s| s.labels.get("core").is_some()));
    let messages: f64 = find("ringcast_messages_in_total")
        .map(|s| match s.value {
            Value::Counter(value) => value,
            ref other => panic!("messages_in: {other:?}"),
        })
        .sum();
    assert_eq!(messages, 3.0);

    // Process metrics.
    assert!(gauge("process_resident_memory_bytes") > 0.0);
    assert!(gauge("process_open_fds") >= 3.0);
    assert!(matches!(
        find("process_cpu_seconds_total").next().map(|s| &s.value),
        Some(Value::Counter(seconds)) if *seconds >= 0.0
    ));

    // Build info.
    let info = find("ringcast_build_info")
        .next()
        .expect("ringcast_build_info");
    assert_eq!(info.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    // The suite also runs with RINGCAST_IO=epoll (and --io auto may fall back): either name.
    let backend = info.labels.get("backend");
    assert!(
        matches!(backend, Some("io_uring" | "epoll")),
        "backend {backend:?}"
    );
    assert!(info.labels.get("commit").is_some_and(|c| !c.is_empty()));
    assert!(matches!(info.value, Value::Gauge(v) if v == 1.0));

    // Histograms: the first of the three messages was timed (one in 8 is, per core), and every
    // write was counted.
    for name in ["ringcast_fanout_seconds", "ringcast_frames_per_write"] {
        let histogram = find(name)
            .next()
            .unwrap_or_else(|| panic!("{name} missing"));
        let Value::Histogram(buckets) = &histogram.value else {
            panic!("{name}: not a histogram: {:?}", histogram.value);
        };
        let infinite = buckets.last().expect("buckets");
        assert!(infinite.less_than.is_infinite());
        assert!(infinite.count >= 1.0, "{name}: {buckets:?}");
        let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{name} buckets are not cumulative: {counts:?}"
        );
    }

    // Auth and publish counters are present (all zero here).
    assert!(find("ringcast_auth_total").count() >= 3);
    assert!(find("ringcast_http_publish_total").count() >= 6);
}

#[tokio::test]
async fn build_info_names_the_backend_that_runs() {
    let server = start_server(&["--io", "epoll"]);
    let text = http::get(server.addr, "/metrics", &[]).await.body_text();
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("parse");
    let info = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ringcast_build_info")
        .expect("ringcast_build_info");
    assert_eq!(info.labels.get("backend"), Some("epoll"));
}
