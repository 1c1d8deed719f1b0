//! `--churn EVERY:DOWNTIME`, per subscriber: when it leaves and for how long, pure arithmetic.
//!
//! Subscriber j leaves at `measure start + phase_j + k * EVERY` (k = 0, 1, ...) and comes back
//! DOWNTIME later. The phase is uniform in [0, EVERY) and fixed per subscriber, so departures
//! are spread evenly over time (a steady churn, not a reconnect storm every EVERY) and the
//! process is the same at every moment of the window. Departures start with the measured
//! window (the warm-up stays clean), and only one that is back before the window ends is
//! taken, so the drain covers a replay after the last return.

use super::window::Window;
use crate::plan::{ConnectionSpec, Scenario};

/// One subscriber's departures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnPlan {
    /// Period of the departures, ns.
    every_ns: u64,
    /// Time away, ns.
    pub downtime_ns: u64,
    /// This subscriber's offset into the period, ns, in [0, every).
    phase_ns: u64,
}

impl ChurnPlan {
    /// The plan of connection `spec` in run `run_id`; `None` for publishers and stalled
    /// subscribers (they stay) and without `--churn`.
    pub fn of(scenario: &Scenario, spec: ConnectionSpec, run_id: u32) -> Option<ChurnPlan> {
        let churn = scenario.churn?;
        if spec.publisher.is_some() || spec.stalled {
            return None;
        }
        let every_ns = ((churn.every_s * 1e9) as u64).max(1);
        // splitmix64 of (run, connection): a phase that differs per subscriber and per run, with
        // no shared generator to lock.
        let mut z = (u64::from(run_id) << 32 ^ spec.index).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Some(ChurnPlan {
            every_ns,
            downtime_ns: (churn.downtime_s * 1e9) as u64,
            phase_ns: ((u128::from(z) * u128::from(every_ns)) >> 64) as u64,
        })
    }

    /// The first departure at or after `after_ns`, if one is still back before the window ends.
    pub fn next_leave(&self, window: &Window, after_ns: u64) -> Option<u64> {
        let first = window.measure_start_ns + self.phase_ns;
        let periods = after_ns.saturating_sub(first).div_ceil(self.every_ns);
        let leave = first + periods * self.every_ns;
        (leave + self.downtime_ns < window.measure_end_ns).then_some(leave)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn scenario(extra: &[&str]) -> Scenario {
        let args = [
            &["--url", "ws://127.0.0.1:9/ws", "--subscribers", "1000"][..],
            extra,
        ];
        Plan::from_run_args(&args.concat()).unwrap().scenario
    }

    #[test]
    fn only_subscribers_that_read_churn() {
        let s = scenario(&["--churn", "10s:2s", "--stalled", "10"]);
        assert!(
            ChurnPlan::of(&s, ConnectionSpec::of(&s, 0), 1).is_none(),
            "stalled"
        );
        assert!(ChurnPlan::of(&s, ConnectionSpec::of(&s, 500), 1).is_some());
        assert!(
            ChurnPlan::of(&s, ConnectionSpec::of(&s, 1000), 1).is_none(),
            "publisher"
        );
        let plain = scenario(&[]);
        assert!(ChurnPlan::of(&plain, ConnectionSpec::of(&plain, 500), 1).is_none());
    }

    #[test]
    fn phases_spread_over_the_period() {
        let s = scenario(&["--churn", "10s:2s"]);
        let phases: Vec<u64> = (0..1000)
            .map(|i| {
                ChurnPlan::of(&s, ConnectionSpec::of(&s, i), 7)
                    .unwrap()
                    .phase_ns
            })
            .collect();
        assert!(phases.iter().all(|&p| p < 10_000_000_000));
        // Ten buckets of one second each hold roughly a tenth.
        for bucket in 0..10 {
            let n = phases
                .iter()
                .filter(|&&p| p / 1_000_000_000 == bucket)
                .count();
            assert!((50..150).contains(&n), "bucket {bucket}: {n}");
        }
    }

    #[test]
    fn departures_follow_the_period_and_return_within_the_window() {
        let plan = ChurnPlan {
            every_ns: 10,
            downtime_ns: 3,
            phase_ns: 4,
        };
        let window = Window {
            t0_ns: 0,
            measure_start_ns: 100,
            measure_end_ns: 140,
        };
        assert_eq!(plan.next_leave(&window, 0), Some(104));
        assert_eq!(plan.next_leave(&window, 104), Some(104));
        assert_eq!(plan.next_leave(&window, 105), Some(114));
        assert_eq!(plan.next_leave(&window, 124), Some(124));
        // 134 + 3 = 137 < 140: back in time; 144 is past the end.
        assert_eq!(plan.next_leave(&window, 125), Some(134));
        assert_eq!(plan.next_leave(&window, 135), None);
        let late = Window {
            measure_end_ns: 137,
            ..window
        };
        assert_eq!(plan.next_leave(&late, 125), None);
    }
}
