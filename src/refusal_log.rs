//! Refused handshakes in the default log: one summary line per interval, counts by reason.
//!
//! Responsibility: turn the refusal counters every worker keeps (`metrics::Refusal`, also in
//! `/metrics` and on the dashboard) into at most one `info` line per
//! [`REFUSAL_LOG_INTERVAL_SECONDS`]: how many requests were refused since the previous line,
//! by reason, e.g. `handshakes refused count=5 reasons=invalid_token:3,unknown_app:2`. A
//! reconnect storm with bad tokens thus leaves a trace without flooding the log. Worker 0's
//! ticker drives it (once a second, reading every worker's counters with relaxed loads),
//! and the rest is written when that worker stops.
//!
//! Must not: log anything taken from a request — no token, no path, no address, no app id:
//! the reasons are the fixed labels of `Refusal`. (At debug level `runtime::connection`
//! names an unknown app's id from the request, escaped with `log_value::Escaped`.)
//!
//! Invariants: every refusal counted is reported in exactly one line (the counters only
//! grow; each line reports the difference to the previous one); no line is written while
//! nothing was refused.

use crate::metrics::{Refusal, WorkerMetrics};
use std::sync::Arc;

/// Seconds between two summary lines at most one of which is written per interval. Ten
/// seconds keeps a storm to six lines a minute, while a lone refusal after a quiet spell is
/// logged at the next tick (within a second).
pub const REFUSAL_LOG_INTERVAL_SECONDS: u64 = 10;

/// The summary state: what the last line covered.
#[derive(Debug, Default)]
pub struct RefusalSummary {
    /// Per reason (in `Refusal::ALL` order): refusals reported so far.
    reported: [u64; Refusal::ALL.len()],
    /// Tick (seconds since start) of the last line; `None` before the first.
    last_line_s: Option<u64>,
}

/// One summary line's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Refusals since the previous line.
    pub count: u64,
    /// `reason:count` pairs of the reasons that occurred, comma-separated, in
    /// `Refusal::ALL` order.
    pub reasons: String,
    /// Seconds since the previous line (since start for the first).
    pub seconds: u64,
}

/// The log writer: the summary state and every worker's counters. Dropped with worker 0's
/// ticker when the worker stops, it writes what the last line did not cover yet, so that a
/// shutdown loses no refusal.
pub struct RefusalLog {
    summary: RefusalSummary,
    workers: Arc<[WorkerMetrics]>,
    /// Seconds since start at the last tick.
    now_s: u64,
}

impl RefusalLog {
    pub fn new(workers: Arc<[WorkerMetrics]>) -> RefusalLog {
        RefusalLog {
            summary: RefusalSummary::default(),
            workers,
            now_s: 0,
        }
    }

    /// Called once a second with the seconds since start: writes the summary line when one
    /// is due.
    pub fn tick(&mut self, now_s: u64) {
        self.now_s = now_s;
        let totals = self.totals();
        if let Some(summary) = self.summary.observe(now_s, totals, false) {
            write(&summary);
        }
    }

    fn totals(&self) -> [u64; Refusal::ALL.len()] {
        let mut totals = [0_u64; Refusal::ALL.len()];
        for (total, reason) in totals.iter_mut().zip(Refusal::ALL) {
            *total = self.workers.iter().map(|w| w.refusals(reason)).sum();
        }
        totals
    }
}

impl Drop for RefusalLog {
    fn drop(&mut self) {
        let totals = self.totals();
        if let Some(summary) = self.summary.observe(self.now_s, totals, true) {
            write(&summary);
        }
    }
}

fn write(summary: &Summary) {
    tracing::info!(
        count = summary.count,
        reasons = %summary.reasons,
        seconds = summary.seconds,
        "handshakes refused"
    );
}

impl RefusalSummary {
    /// The line due at `now_s` given the counters' `totals`, if any (and then it counts as
    /// written). `last`: the final line at shutdown, due whatever the interval.
    pub fn observe(
        &mut self,
        now_s: u64,
        totals: [u64; Refusal::ALL.len()],
        last: bool,
    ) -> Option<Summary> {
        if totals == self.reported {
            return None;
        }
        if let (Some(previous), false) = (self.last_line_s, last) {
            if now_s.saturating_sub(previous) < REFUSAL_LOG_INTERVAL_SECONDS {
                return None;
            }
        }
        let mut count = 0;
        let mut reasons = Vec::new();
        for ((total, reported), reason) in totals.iter().zip(&self.reported).zip(Refusal::ALL) {
            let new = total.saturating_sub(*reported);
            if new > 0 {
                count += new;
                reasons.push(format!("{}:{new}", reason.label()));
            }
        }
        let seconds = now_s.saturating_sub(self.last_line_s.unwrap_or(0));
        self.reported = totals;
        self.last_line_s = Some(now_s);
        Some(Summary {
            count,
            reasons: reasons.join(","),
            seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(pairs: &[(Refusal, u64)]) -> [u64; Refusal::ALL.len()] {
        let mut totals = [0; Refusal::ALL.len()];
        for (reason, count) in pairs {
            let index = Refusal::ALL.iter().position(|r| r == reason).unwrap();
            totals[index] = *count;
        }
        totals
    }

    #[test]
    fn one_line_per_interval_and_every_refusal_reported_once() {
        let mut log = RefusalSummary::default();
        assert_eq!(log.observe(1, totals(&[]), false), None, "nothing refused");
        let first = log
            .observe(
                2,
                totals(&[(Refusal::InvalidToken, 3), (Refusal::UnknownApp, 2)]),
                false,
            )
            .expect("a first refusal is logged at once");
        assert_eq!(first.count, 5);
        assert_eq!(first.reasons, "unknown_app:2,invalid_token:3");
        // More refusals within the interval wait for it to end…
        let later = totals(&[(Refusal::InvalidToken, 10), (Refusal::UnknownApp, 2)]);
        for now in 3..2 + REFUSAL_LOG_INTERVAL_SECONDS {
            assert_eq!(log.observe(now, later, false), None, "at {now} s");
        }
        // …and are then reported together, only the new ones.
        let second = log
            .observe(2 + REFUSAL_LOG_INTERVAL_SECONDS, later, false)
            .unwrap();
        assert_eq!(second.count, 7);
        assert_eq!(second.reasons, "invalid_token:7");
        assert_eq!(second.seconds, REFUSAL_LOG_INTERVAL_SECONDS);
        // Quiet: no line, however long.
        assert_eq!(log.observe(1000, later, false), None);
        // At shutdown the rest is written at once, and only once.
        let last = totals(&[(Refusal::InvalidToken, 11), (Refusal::UnknownApp, 2)]);
        assert_eq!(
            log.observe(1001, last, false),
            Some(Summary {
                count: 1,
                reasons: "invalid_token:1".into(),
                seconds: 1001 - 2 - REFUSAL_LOG_INTERVAL_SECONDS,
            })
        );
        let after = totals(&[(Refusal::InvalidToken, 12), (Refusal::UnknownApp, 2)]);
        assert_eq!(log.observe(1002, after, false), None, "within the interval");
        assert_eq!(log.observe(1002, after, true).unwrap().count, 1, "shutdown");
        assert_eq!(log.observe(1002, after, true), None);
    }
}
