//! loadgen against a real ringcast server started in this process: counts must balance and
//! latency figures must be positive and ordered; a threshold that cannot hold exits 99.

use std::process::Command;

use loadgen::report::Report;

use crate::util::{loadgen_run, scratch_dir, start_ringcast as start_server};

#[test]
fn two_hundred_subscribers_two_publishers_lose_nothing() {
    let server = start_server(&[]);
    let url = format!("ws://{}/ws/bench", server.local_addr());
    let out = scratch_dir("ringcast");
    let output = loadgen_run(
        &url,
        &[
            "--subscribers",
            "200",
            "--publishers",
            "2",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--drain",
            "1s",
            "--threads",
            "2",
            "--threshold",
            "lost==0",
        ],
        &out,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    assert_eq!(r.connections.ok, 202);
    // Plain ws://: TCP connect and upgrade timed for every connection, no TLS step.
    let steps = r.connect_steps.expect("connect steps reported");
    assert_eq!((steps.tcp_ns.count, steps.upgrade_ns.count), (202, 202));
    assert_eq!(steps.tls_handshake_ns, None);
    assert!(
        r.sent_measured >= 380,
        "two publishers x 100/s x 2 s, got {}",
        r.sent_measured
    );
    // Every receiver (publishers included) of the one room gets every measured message.
    assert_eq!(r.expected, r.sent_measured * 202);
    assert_eq!(r.delivered, r.expected);
    assert_eq!((r.lost, r.duplicated), (0, 0));
    let latency = &r.latency_ns;
    assert!(
        latency.p50 > Some(0) && latency.p50 <= latency.p99 && latency.p99 <= latency.max,
        "{latency:?}"
    );
    assert_eq!(latency.count, r.delivered);
    for file in ["latency.hlog", "latency.hgrm", "timeline.csv"] {
        assert!(
            std::fs::metadata(out.join(file))
                .map(|m| m.len() > 0)
                .unwrap_or(false),
            "{file} missing"
        );
    }
    // The log's untagged intervals add up to exactly report.json's latency; its latency_all
    // intervals are the timeline's rows.
    let log = loadgen::merge::read_hlog(&out.join("latency.hlog")).expect("log reads back");
    let mut untagged = loadgen::new_histogram();
    let mut every = Vec::new();
    for (tag, _, _, histogram) in &log.intervals {
        match tag.as_deref() {
            None => untagged.add(histogram).unwrap(),
            Some("latency_all") => every.push(histogram.len()),
            _ => {}
        }
    }
    assert_eq!(untagged, report.histogram("latency").unwrap());
    let timeline =
        loadgen::report::csv::parse(&std::fs::read_to_string(out.join("timeline.csv")).unwrap())
            .unwrap();
    let delivered: Vec<u64> = timeline.iter().map(|row| row.delivered).collect();
    assert_eq!(every, delivered);

    let failing = loadgen_run(
        &url,
        &[
            "--subscribers",
            "5",
            "--publishers",
            "1",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--drain",
            "500ms",
            "--threshold",
            "p50<1ns",
        ],
        &scratch_dir("threshold"),
    );
    assert_eq!(
        failing.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&failing.stdout)
    );
    server.shutdown();
}

#[test]
fn stalled_subscribers_closed_by_the_server_are_reported() {
    // A subscriber that stops reading 60 KiB messages at 50/s (3 MB/s) is past the loopback
    // socket buffers (a few MB) and the 512 KiB outbound budget within a few seconds. The
    // budget leaves a healthy receiver room for a few messages while its socket buffers are
    // still small after connect (128 KiB, two messages, closed one now and then on a loaded
    // machine).
    let server = start_server(&["--max-backlog", "512KiB"]);
    let url = format!("ws://{}/ws/stall", server.local_addr());
    let out = scratch_dir("stalled");
    let output = loadgen_run(
        &url,
        &[
            "--subscribers",
            "8",
            "--stalled",
            "50",
            "--publishers",
            "1",
            "--rate",
            "50",
            "--size",
            "60KiB",
            "--duration",
            "5s",
            "--warmup",
            "1s",
            "--drain",
            "3s",
        ],
        &out,
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    assert_eq!(
        (r.stalled.connections, r.stalled.closed_by_server),
        (4, 4),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // The other receivers (4 subscribers and the publisher) are not held back by the stalled ones.
    assert_eq!((r.lost, r.expected), (0, r.sent_measured * 5));
    server.shutdown();
}

#[test]
fn two_independent_servers_deliver_same_node_only() {
    // Two ringcast processes with no broker between them are two separate worlds: a room on
    // one is not the room on the other. Every same-node delivery arrives, none crosses.
    let (a, b) = (start_server(&[]), start_server(&[]));
    let url_a = format!("ws://{}/ws/nodes", a.local_addr());
    let url_b = format!("ws://{}/ws/nodes", b.local_addr());
    let out = scratch_dir("nodes");
    // Connections 0..9 are subscribers (5 on each URL), 10..12 publishers: 0 and 2 on A,
    // 1 on B.
    let output = loadgen_run(
        &url_a,
        &[
            "--url",
            &url_b,
            "--subscribers",
            "10",
            "--publishers",
            "3",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "500ms",
            "--drain",
            "500ms",
            "--threads",
            "2",
            "--threshold",
            "same_node_lost==0",
            "--threshold",
            "cross_node_delivered==0",
        ],
        &out,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    let nodes = r.nodes.as_ref().expect("two URLs: a nodes section");
    let per_url: Vec<(&str, u64, u64, u64)> = nodes
        .urls
        .iter()
        .map(|u| (u.url.as_str(), u.target, u.publishers, u.ok))
        .collect();
    assert_eq!(
        per_url,
        vec![(url_a.as_str(), 7, 2, 7), (url_b.as_str(), 6, 1, 6)]
    );
    let (same, cross) = (&nodes.same_node, &nodes.cross_node);
    // One room: on A, 7 receivers get publishers 0 and 2 (same node) and miss publisher 1; on
    // B, 6 receivers get publisher 1 and miss 0 and 2.
    assert!(r.sent_measured >= 3 * 40, "sent {}", r.sent_measured);
    assert_eq!(same.expected + cross.expected, r.expected);
    assert_eq!(same.delivered, same.expected, "{stdout}");
    assert_eq!((same.lost, cross.delivered), (0, 0), "{stdout}");
    assert_eq!(cross.lost, cross.expected);
    assert_eq!(same.delivered + cross.delivered, r.delivered);
    assert_eq!(same.latency_ns.count, same.delivered);
    assert_eq!((cross.latency_ns.count, cross.latency_ns.p99), (0, None));
    assert!(same.latency_ns.p50 > Some(0) && same.latency_ns.p99 <= same.latency_ns.max);
    // Same-node latency is all the latency there is.
    assert_eq!(
        report.histogram("latency_same_node").unwrap(),
        report.histogram("latency").unwrap()
    );
    assert_eq!(report.histogram("latency_cross_node").unwrap().len(), 0);
    assert!(
        stdout.contains("cross-node             delivered 0 of expected"),
        "{stdout}"
    );

    // One URL: no nodes section, no node histograms, nothing new in report.json.
    let single = scratch_dir("nodes-single");
    let output = loadgen_run(
        &url_a,
        &[
            "--subscribers",
            "2",
            "--rate",
            "20",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--drain",
            "300ms",
        ],
        &single,
    );
    assert_eq!(output.status.code(), Some(0));
    let text = std::fs::read_to_string(single.join("report.json")).unwrap();
    assert!(
        !text.contains("\"nodes\"") && !text.contains("_node"),
        "{text}"
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn two_urls_naming_one_server_deliver_across_nodes() {
    // Both URLs name the same server, so the one room is shared: loadgen counts a delivery from
    // a publisher on the other URL as cross-node (a node is a URL as given), and every one
    // arrives. This exercises the cross-node path without a broker.
    let server = start_server(&[]);
    let url = format!("ws://{}/ws/shared", server.local_addr());
    let out = scratch_dir("nodes-shared");
    let output = loadgen_run(
        &url,
        &[
            "--url",
            &url,
            "--subscribers",
            "6",
            "--publishers",
            "2",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "500ms",
            "--drain",
            "500ms",
            "--threshold",
            "lost==0",
            "--threshold",
            "cross_node_lost==0",
        ],
        &out,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    let nodes = r.nodes.as_ref().expect("two URLs");
    let (same, cross) = (&nodes.same_node, &nodes.cross_node);
    // 8 receivers, 4 per URL, one publisher per URL: each message has 4 same-node and 4
    // cross-node receivers.
    assert_eq!(same.expected, r.sent_measured * 4);
    assert_eq!(cross.expected, r.sent_measured * 4);
    assert_eq!(
        (same.delivered, cross.delivered),
        (same.expected, cross.expected)
    );
    assert_eq!(cross.latency_ns.count, cross.delivered);
    assert!(cross.latency_ns.p50 > Some(0) && cross.latency_ns.p999 <= cross.latency_ns.max);
    let mut sum = report.histogram("latency_same_node").unwrap();
    sum.add(report.histogram("latency_cross_node").unwrap())
        .unwrap();
    assert_eq!(sum, report.histogram("latency").unwrap());
    server.shutdown();
}

#[test]
fn without_warm_up_the_first_message_is_measured_everywhere() {
    // The first message is due at the window's start. A receiver waiting on its socket when the
    // window was set read it with no window, left it unmeasured, and every receiver counted
    // it lost (one message per publisher, in every run with --warmup 0s).
    let server = start_server(&[]);
    let url = format!("ws://{}/ws/nowarmup", server.local_addr());
    let out = scratch_dir("no-warmup");
    let output = loadgen_run(
        &url,
        &[
            "--subscribers",
            "10",
            "--publishers",
            "2",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--drain",
            "500ms",
            "--threshold",
            "lost==0",
        ],
        &out,
    );
    let report = Report::read(&out.join("report.json")).expect("report written");
    let r = &report.results;
    assert_eq!(
        (r.lost, r.delivered, output.status.code()),
        (0, r.sent_measured * 12, Some(0)),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    server.shutdown();
}

#[test]
fn several_server_pids_are_sampled_and_summed() {
    // The server runs in this test process; a `sleep` child stands in for a second process of
    // a cluster (a broker), and a child killed mid-run for a node that vanished.
    let server = start_server(&[]);
    let url = format!("ws://{}/ws/pids", server.local_addr());
    let mut idle = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep starts");
    let me = std::process::id();
    let pids = format!("{me},{}", idle.id());
    let out = scratch_dir("server-pids");
    let args = [
        "--subscribers",
        "20",
        "--publishers",
        "1",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--warmup",
        "500ms",
        "--drain",
        "500ms",
    ];
    let output = loadgen_run(&url, &[&args[..], &["--server-pid", &pids]].concat(), &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert_eq!(report.scenario.server_pids, vec![me, idle.id()]);
    let s = report.results.server.as_ref().expect("server figures");
    assert_eq!((s.pid, s.pids.clone()), (me, vec![me, idle.id()]));
    assert_eq!(s.processes.len(), 2);
    let cpu: f64 = s.processes.iter().map(|p| p.cpu_seconds).sum();
    assert!((s.cpu_seconds - cpu).abs() < 1e-9);
    let rss: u64 = s.processes.iter().map(|p| p.rss_connected_bytes).sum();
    assert_eq!(s.rss_connected_bytes, rss);
    assert!(s.processes[0].cpu_seconds > 0.0, "the server worked");
    assert!(
        stdout.contains(&format!("servers (2 pids: {me}, {})", idle.id())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("  pid {me} ")), "{stdout}");

    // One pid vanishes during the run: no server figures (as with a single vanished pid).
    let mut doomed = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep starts");
    let pids = format!("{me},{}", doomed.id());
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        let _ = doomed.kill();
        let _ = doomed.wait();
    });
    let out = scratch_dir("server-pids-vanished");
    let output = loadgen_run(&url, &[&args[..], &["--server-pid", &pids]].concat(), &out);
    killer.join().unwrap();
    let report = Report::read(&out.join("report.json")).expect("report written");
    assert_eq!(
        (output.status.code(), report.results.server.is_none()),
        (Some(0), true),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let _ = idle.kill();
    let _ = idle.wait();
    server.shutdown();
}
