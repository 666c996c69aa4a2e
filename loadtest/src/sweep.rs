//! `sweep`: one scenario (`fanout` or `topics`) at a list of open-loop offered rates, each
//! server in turn at each rate, and the **capacity at the latency objective** per server.
//!
//! Responsibility: the order of the points, the judgement of each point against the
//! objective, the capacity, and the sweep's JSON, table and chart. Must not: start servers
//! or drive clients (the caller's `run_point` does; it is `main::run_started` with
//! `--rate` set).
//!
//! Invariants: rates run from lowest to highest, and at each rate every server runs once
//! per round before the next rate (A B A B …, as `--compare` does); a server's capacity is
//! the highest rate that met the objective in every round *with every lower rate meeting it
//! too* — a lucky point above a failed one is reported as a warning, not as capacity.

use crate::report::{self, ms_label, si_label, RunRecord};
use crate::scenarios::{Measurement, Scenario};
use crate::server::{Provenance, ServerKind};
use anyhow::{bail, Context};
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

/// The sweep's own options (only with `ringcast-loadtest sweep`).
#[derive(Clone, Debug, clap::Args)]
pub struct SweepArgs {
    /// sweep: the scenario to sweep, fanout or topics.
    #[arg(long = "scenario", value_enum)]
    pub scenario: Option<Scenario>,
    /// sweep: offered publications per second over all publishers, comma-separated;
    /// `k` and `M` suffixes allowed (`100,1k,2.5k`).
    #[arg(long)]
    pub rates: Option<String>,
    /// sweep: the latency objective, milliseconds: a rate meets it with delivery p99 at or
    /// below this, nothing lost, no errors, and the publishers on schedule (p99 lag at or
    /// below this).
    #[arg(long)]
    pub slo_ms: Option<f64>,
}

/// A validated sweep.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub scenario: Scenario,
    /// Ascending, distinct, positive.
    pub rates: Vec<f64>,
    pub slo_ms: f64,
}

impl SweepArgs {
    /// The sweep these options describe; every option is required.
    pub fn validate(&self) -> anyhow::Result<Sweep> {
        let scenario = self
            .scenario
            .context("sweep needs --scenario fanout|topics")?;
        if !matches!(scenario, Scenario::Fanout | Scenario::Topics) {
            bail!("sweep runs fanout or topics (open-loop publishers), not {scenario:?}");
        }
        let rates = parse_rates(
            self.rates
                .as_deref()
                .context("sweep needs --rates R1,R2,…")?,
        )?;
        let slo_ms = self.slo_ms.context("sweep needs --slo-ms N")?;
        if !(slo_ms.is_finite() && slo_ms > 0.0) {
            bail!("--slo-ms must be a positive number of milliseconds, not {slo_ms}");
        }
        Ok(Sweep {
            scenario,
            rates,
            slo_ms,
        })
    }

    /// Whether any sweep option was given (they are refused outside `sweep`).
    pub fn any(&self) -> bool {
        self.scenario.is_some() || self.rates.is_some() || self.slo_ms.is_some()
    }
}

/// Parses `100,1k,2.5k,1M` into ascending publications per second.
pub fn parse_rates(text: &str) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (number, scale) = match part.strip_suffix(['k', 'K']) {
            Some(number) => (number, 1e3),
            None => match part.strip_suffix('M') {
                Some(number) => (number, 1e6),
                None => (part, 1.0),
            },
        };
        let rate = number
            .trim()
            .parse::<f64>()
            .map(|value| value * scale)
            .with_context(|| format!("--rates: {part:?} is not a rate (e.g. 200, 1.5k, 2M)"))?;
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rates: {part:?} is not a positive rate");
        }
        if rates.contains(&rate) {
            bail!("--rates: {part:?} appears twice");
        }
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates)
}

/// Why a run does not meet the objective of `slo_ms`, or `None` when it does.
pub fn shortfall(measurement: &Measurement, slo_ms: f64) -> Option<String> {
    let slo_micros = slo_ms * 1000.0;
    let mut reasons = Vec::new();
    if measurement.lost != 0 {
        reasons.push(format!("lost {}", measurement.lost));
    }
    if !measurement.errors.is_empty() {
        reasons.push(format!("errors {:?}", measurement.errors));
    }
    if measurement.deliveries == 0 {
        reasons.push("no deliveries".to_string());
    }
    let p99 = measurement.latency_micros.p99 as f64;
    if p99 > slo_micros {
        reasons.push(format!("p99 {:.2} ms > {slo_ms} ms", p99 / 1000.0));
    }
    if let Some(lag) = &measurement.schedule_lag_micros {
        if lag.p99 as f64 > slo_micros {
            reasons.push(format!(
                "publishers behind the offered rate (p99 {} late)",
                ms_label(lag.p99 as f64 / 1000.0)
            ));
        }
    }
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

/// One server's capacity at the objective, chosen from its points.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityChoice {
    /// Highest rate that met the objective, every lower rate meeting it too; `None` when
    /// the lowest rate already failed.
    pub publishes_per_second: Option<f64>,
    /// Rates that met the objective above a rate that did not (noise or a warm-up
    /// effect; not counted as capacity).
    pub met_above_a_failure: Vec<f64>,
}

/// Picks the capacity from `(rate, met)` points (several per rate for several rounds: a
/// rate meets the objective only if every round of it does).
pub fn capacity(points: &[(f64, bool)]) -> CapacityChoice {
    let mut rates: Vec<f64> = points.iter().map(|(rate, _)| *rate).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let mut choice = CapacityChoice {
        publishes_per_second: None,
        met_above_a_failure: Vec::new(),
    };
    let mut failed = false;
    for rate in rates {
        let met = points
            .iter()
            .filter(|(point_rate, _)| *point_rate == rate)
            .all(|(_, met)| *met);
        match (met, failed) {
            (true, false) => choice.publishes_per_second = Some(rate),
            (true, true) => choice.met_above_a_failure.push(rate),
            (false, _) => failed = true,
        }
    }
    choice
}

/// One run of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    pub server: String,
    pub offered_publishes_per_second: f64,
    /// Offered publications × the mean audience of one publication.
    pub offered_deliveries_per_second: f64,
    pub round: usize,
    pub meets_objective: bool,
    /// Why not, when it does not.
    pub shortfall: Option<String>,
    pub record: RunRecord,
}

/// A server's capacity at the objective.
#[derive(Clone, Debug, Serialize)]
pub struct ServerCapacity {
    pub server: String,
    /// `null`: not even the lowest rate met the objective.
    pub publishes_per_second: Option<f64>,
    pub offered_deliveries_per_second: Option<f64>,
    pub met_above_a_failure: Vec<f64>,
}

/// The sweep's JSON result.
#[derive(Clone, Debug, Serialize)]
pub struct SweepResult {
    pub kind: &'static str,
    pub scenario: Scenario,
    pub slo_ms: f64,
    pub objective: String,
    pub rates_publishes_per_second: Vec<f64>,
    pub mean_audience: f64,
    pub servers: Vec<String>,
    pub rounds: usize,
    pub order: &'static str,
    /// Where the sweep ran (each point's record carries its own, with its server).
    pub provenance: Provenance,
    pub points: Vec<SweepPoint>,
    pub capacity: Vec<ServerCapacity>,
    /// Client-bound points and capacity caveats, also printed.
    pub warnings: Vec<String>,
}

/// Runs the sweep: `run_point(rate, server, round)` runs one point.
pub fn run(
    sweep: &Sweep,
    servers: &[ServerKind],
    rounds: usize,
    mean_audience: f64,
    mut run_point: impl FnMut(f64, ServerKind, usize) -> anyhow::Result<RunRecord>,
) -> anyhow::Result<SweepResult> {
    let mut points = Vec::new();
    let mut warnings = Vec::new();
    for &rate in &sweep.rates {
        for round in 1..=rounds {
            for &kind in servers {
                println!(
                    "sweep: {} at {} publications/s ({} deliveries/s offered), round {round}",
                    kind.name(),
                    si_label(rate),
                    si_label(rate * mean_audience)
                );
                let record = run_point(rate, kind, round).with_context(|| {
                    format!("sweep point {} at {rate} publications/s", kind.name())
                })?;
                let shortfall = shortfall(&record.measurement, sweep.slo_ms);
                println!(
                    "{}\n  objective: {}",
                    report::summary(&record),
                    shortfall.as_deref().unwrap_or("met")
                );
                if let Some(warning) = &record.measurement.client_bound_warning {
                    warnings.push(format!(
                        "{} at {} publications/s: {warning}",
                        kind.name(),
                        si_label(rate)
                    ));
                }
                points.push(SweepPoint {
                    server: record.provenance.server.clone(),
                    offered_publishes_per_second: rate,
                    offered_deliveries_per_second: rate * mean_audience,
                    round,
                    meets_objective: shortfall.is_none(),
                    shortfall,
                    record,
                });
            }
        }
    }
    let names: Vec<String> = servers.iter().map(|kind| kind.name().to_string()).collect();
    let capacity: Vec<ServerCapacity> = names
        .iter()
        .map(|server| {
            let runs: Vec<(f64, bool)> = points
                .iter()
                .filter(|point| &point.server == server)
                .map(|point| (point.offered_publishes_per_second, point.meets_objective))
                .collect();
            let choice = self::capacity(&runs);
            if !choice.met_above_a_failure.is_empty() {
                warnings.push(format!(
                    "{server}: met the objective at {:?} publications/s above a rate that failed; not counted as capacity",
                    choice.met_above_a_failure
                ));
            }
            ServerCapacity {
                server: server.clone(),
                publishes_per_second: choice.publishes_per_second,
                offered_deliveries_per_second: choice
                    .publishes_per_second
                    .map(|rate| rate * mean_audience),
                met_above_a_failure: choice.met_above_a_failure,
            }
        })
        .collect();
    Ok(SweepResult {
        kind: "sweep",
        scenario: sweep.scenario,
        slo_ms: sweep.slo_ms,
        objective: format!(
            "delivery p99 <= {} ms, 0 lost, no errors, publishers' schedule lag p99 <= {} ms",
            sweep.slo_ms, sweep.slo_ms
        ),
        rates_publishes_per_second: sweep.rates.clone(),
        mean_audience,
        provenance: Provenance::collect(&names.join(","), "per point", "per point"),
        servers: names,
        rounds,
        order: "rates ascending; at each rate every server once per round, in --compare order",
        points,
        capacity,
        warnings,
    })
}

/// The result as a table, the capacities and the warnings.
pub fn table(result: &SweepResult) -> String {
    let mut text = format!(
        "sweep {:?}, objective: {}\n{:>10} {:>12} {:<15} {:>9} {:>9} {:>9} {:>6} {:>12} {:>8} {:>14}  verdict\n",
        result.scenario, result.objective, "pub/s", "offered d/s", "server", "p50", "p99",
        "max", "lost", "delivered/s", "srv cores", "client (thread)"
    );
    for point in &result.points {
        let figures = &point.record.measurement;
        let latency = &figures.latency_micros;
        text.push_str(&format!(
            "{:>10} {:>12} {:<15} {:>9} {:>9} {:>9} {:>6} {:>12} {:>8} {:>14}  {}\n",
            si_label(point.offered_publishes_per_second),
            si_label(point.offered_deliveries_per_second),
            point.server,
            ms_label(latency.p50 as f64 / 1000.0),
            ms_label(latency.p99 as f64 / 1000.0),
            ms_label(latency.max as f64 / 1000.0),
            figures.lost,
            si_label(figures.deliveries_per_second),
            figures
                .server_cores_busy
                .map_or("?".to_string(), |cores| format!("{cores:.2}")),
            format!(
                "{:.2} ({:.2})",
                figures.client_cpu.cores_busy, figures.client_cpu.busiest_thread_cores
            ),
            point.shortfall.as_deref().unwrap_or("met")
        ));
    }
    text.push_str(&format!(
        "capacity at p99 <= {} (highest rate meeting the objective, every lower rate too):\n",
        ms_label(result.slo_ms)
    ));
    for capacity in &result.capacity {
        match (
            capacity.publishes_per_second,
            capacity.offered_deliveries_per_second,
        ) {
            (Some(rate), Some(deliveries)) => text.push_str(&format!(
                "  {:<15} {} publications/s ({} deliveries/s)\n",
                capacity.server,
                si_label(rate),
                si_label(deliveries)
            )),
            _ => text.push_str(&format!(
                "  {:<15} below {} publications/s (the lowest rate tried)\n",
                capacity.server,
                si_label(result.rates_publishes_per_second[0])
            )),
        }
    }
    for warning in &result.warnings {
        text.push_str(&format!("WARNING: {warning}\n"));
    }
    text
}

/// Colours of the servers' lines, in `--compare` order.
const COLOURS: [RGBColor; 3] = [
    RGBColor(200, 60, 40),
    RGBColor(60, 110, 200),
    RGBColor(80, 160, 80),
];

/// SVG chart: p99 (ms, log scale) against offered deliveries/s, one line per server
/// (the median p99 of the rounds at each rate), the objective as a dashed line; a filled
/// dot where the point met the objective, a cross where it did not.
pub fn chart(result: &SweepResult, path: &Path) -> anyhow::Result<()> {
    let p99_ms = |point: &SweepPoint| {
        (point.record.measurement.latency_micros.p99 as f64 / 1000.0).max(LOWEST_CHART_MS)
    };
    let highest_x = result
        .points
        .iter()
        .map(|point| point.offered_deliveries_per_second)
        .fold(1.0, f64::max);
    let lowest_y = result
        .points
        .iter()
        .map(p99_ms)
        .fold(result.slo_ms, f64::min);
    let highest_y = result
        .points
        .iter()
        .map(p99_ms)
        .fold(result.slo_ms, f64::max);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{:?}: p99 latency against offered load (objective {})",
                result.scenario,
                ms_label(result.slo_ms)
            ),
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            0f64..highest_x * 1.05,
            (lowest_y / 1.5..highest_y * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("offered deliveries/s")
        .y_desc("p99 delivery latency")
        .x_label_formatter(&|value| si_label(*value))
        .y_label_formatter(&|value| ms_label(*value))
        .draw()?;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, result.slo_ms), (highest_x * 1.05, result.slo_ms)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?
        .label(format!("objective {}", ms_label(result.slo_ms)))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for (index, server) in result.servers.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let mut line = Vec::new();
        for &rate in &result.rates_publishes_per_second {
            let runs: Vec<&SweepPoint> = result
                .points
                .iter()
                .filter(|point| {
                    &point.server == server && point.offered_publishes_per_second == rate
                })
                .collect();
            if runs.is_empty() {
                continue;
            }
            let mut values: Vec<f64> = runs.iter().map(|point| p99_ms(point)).collect();
            values.sort_by(f64::total_cmp);
            let x = runs[0].offered_deliveries_per_second;
            line.push((
                x,
                values[values.len() / 2],
                runs.iter().all(|point| point.meets_objective),
            ));
        }
        chart
            .draw_series(LineSeries::new(
                line.iter().map(|&(x, y, _)| (x, y)),
                colour.stroke_width(2),
            ))?
            .label(server.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        for &(x, y, met) in &line {
            if met {
                chart.draw_series(std::iter::once(Circle::new((x, y), 4, colour.filled())))?;
            } else {
                chart.draw_series(std::iter::once(Cross::new(
                    (x, y),
                    5,
                    colour.stroke_width(2),
                )))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The chart's floor (a log axis has no 0): p99 below 10 µs is drawn at 10 µs.
const LOWEST_CHART_MS: f64 = 0.01;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_suffixes_and_come_back_ascending() {
        assert_eq!(
            parse_rates("600, 200,1.5k,2M").unwrap(),
            vec![200.0, 600.0, 1_500.0, 2_000_000.0]
        );
        assert_eq!(parse_rates("0.5").unwrap(), vec![0.5]);
    }

    #[test]
    fn bad_rate_lists_are_refused_with_the_offending_entry() {
        for (input, expected) in [
            ("", "\"\""),
            ("100,abc", "\"abc\""),
            ("100,-5", "\"-5\""),
            ("0", "\"0\""),
            ("100,1e400", "\"1e400\""),
            ("100,0.1k", "\"0.1k\" appears twice"),
            ("100,,200", "\"\""),
        ] {
            let error = format!("{:#}", parse_rates(input).unwrap_err());
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn capacity_is_the_highest_rate_below_the_first_failure() {
        let choice = capacity(&[(100.0, true), (200.0, true), (400.0, false), (800.0, false)]);
        assert_eq!(choice.publishes_per_second, Some(200.0));
        assert!(choice.met_above_a_failure.is_empty());
        // Every rate met: the highest.
        let all = capacity(&[(400.0, true), (100.0, true)]);
        assert_eq!(all.publishes_per_second, Some(400.0));
    }

    #[test]
    fn a_lucky_point_above_a_failure_is_not_capacity() {
        let choice = capacity(&[(100.0, true), (200.0, false), (400.0, true)]);
        assert_eq!(choice.publishes_per_second, Some(100.0));
        assert_eq!(choice.met_above_a_failure, vec![400.0]);
    }

    #[test]
    fn a_rate_meets_the_objective_only_if_every_round_does() {
        let choice = capacity(&[(100.0, true), (100.0, true), (200.0, true), (200.0, false)]);
        assert_eq!(choice.publishes_per_second, Some(100.0));
        let none = capacity(&[(100.0, false), (200.0, false)]);
        assert_eq!(none.publishes_per_second, None);
    }

    fn measurement(p99_micros: u64, lost: i64, lag_p99_micros: Option<u64>) -> Measurement {
        let mut figures = Measurement {
            deliveries: 1_000,
            lost,
            ..Measurement::default()
        };
        figures.latency_micros.p99 = p99_micros;
        figures.schedule_lag_micros = lag_p99_micros.map(|p99| crate::scenarios::Latency {
            p99,
            ..Default::default()
        });
        figures
    }

    #[test]
    fn a_point_meets_the_objective_with_p99_within_it_nothing_lost_and_on_schedule() {
        assert_eq!(shortfall(&measurement(50_000, 0, Some(900)), 50.0), None);
        let late = shortfall(&measurement(50_001, 0, None), 50.0).unwrap();
        assert!(late.contains("p99 50.00 ms > 50 ms"), "{late}");
        let lost = shortfall(&measurement(1_000, 3, None), 50.0).unwrap();
        assert_eq!(lost, "lost 3");
        let behind = shortfall(&measurement(1_000, 0, Some(80_000)), 50.0).unwrap();
        assert!(behind.contains("publishers behind"), "{behind}");
    }
}
