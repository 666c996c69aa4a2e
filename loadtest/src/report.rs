//! Results: the JSON record of a run (figures + provenance + configuration), the one-line
//! human summary, the comparison table with ratios, and the SVG chart.
//!
//! Responsibility: presentation only; every number comes from a [`Measurement`].

use crate::scenarios::{Measurement, Scenario, ScenarioOptions};
use crate::server::Provenance;
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

/// One run as written to the JSON result.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub scenario: Scenario,
    pub round: usize,
    pub provenance: Provenance,
    pub options: ScenarioOptions,
    /// Server launch settings (workers, cpus), or the external URL.
    pub server_settings: serde_json::Value,
    /// Client CPUs the harness was pinned to, if any.
    pub client_cpus: Option<String>,
    pub measurement: Measurement,
}

fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A short human summary of one run.
pub fn summary(record: &RunRecord) -> String {
    let figures = &record.measurement;
    let latency = &figures.latency_micros;
    let mut text = format!(
        "{:<15} {:?} round {}: {:.0} deliveries/s, {:.0} publishes/s, lost {}, p50/p90/p99/p99.9/max {}/{}/{}/{}/{} µs",
        record.provenance.server, record.scenario, record.round, figures.deliveries_per_second, figures.publishes_per_second,
        figures.lost, latency.p50, latency.p90, latency.p99, latency.p999, latency.max
    );
    if let (Some(cpu), Some(busy)) = (figures.server_cpu_seconds, figures.server_cores_busy) {
        text.push_str(&format!(", server CPU {cpu:.2} s ({busy:.2} cores)"));
    }
    if let Some(per_cpu) = figures.deliveries_per_server_cpu_second {
        text.push_str(&format!(", {per_cpu:.0} deliveries/CPU-s"));
    }
    if let Some(peak) = figures.server_peak_rss_bytes {
        text.push_str(&format!(", peak RSS {:.1} MiB", mebibytes(peak)));
    }
    if record.scenario == Scenario::Connect {
        text.push_str(&format!(
            ", {:.0} handshakes/s",
            figures.handshakes_per_second
        ));
        if let Some(per_cpu) = figures.handshakes_per_server_cpu_second {
            text.push_str(&format!(", {per_cpu:.0} handshakes/CPU-s"));
        }
    }
    if let Some(idle) = &figures.idle {
        text.push_str(&format!(
            ", {} open, {:.0} B RSS/conn, kernel {:.0} B TCP buffers + {:.0} B slab /conn (both ends), {:.4} CPU-s/conn/h, connect {:.0}/s",
            figures.connections, idle.rss_per_connection_bytes, idle.kernel_tcp_memory_per_connection_bytes,
            idle.kernel_slab_per_connection_bytes,
            idle.cpu_seconds_per_connection_hour, figures.handshakes_per_second
        ));
    }
    if !figures.errors.is_empty() {
        text.push_str(&format!(", errors {:?}", figures.errors));
    }
    text
}

/// The figure a comparison ranks by, per scenario.
pub fn headline(record: &RunRecord) -> (&'static str, f64) {
    let figures = &record.measurement;
    match record.scenario {
        Scenario::Connect => (
            "handshakes per server CPU-second",
            figures.handshakes_per_server_cpu_second.unwrap_or(0.0),
        ),
        Scenario::Idle => (
            "RSS bytes per connection",
            figures
                .idle
                .as_ref()
                .map_or(0.0, |idle| idle.rss_per_connection_bytes),
        ),
        _ => (
            "deliveries per server CPU-second",
            figures.deliveries_per_server_cpu_second.unwrap_or(0.0),
        ),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|left, right| left.total_cmp(right));
    match values.len() {
        0 => 0.0,
        length if length % 2 == 1 => values[length / 2],
        length => (values[length / 2 - 1] + values[length / 2]) / 2.0,
    }
}

/// Medians per server and their ratios to the first server; returned as printable text.
pub fn comparison(records: &[RunRecord], servers: &[String]) -> String {
    let Some(first) = records.first() else {
        return String::new();
    };
    let (label, _) = headline(first);
    let mut rows = Vec::new();
    for server in servers {
        let runs: Vec<&RunRecord> = records
            .iter()
            .filter(|record| &record.provenance.server == server)
            .collect();
        let pick = |value: &dyn Fn(&RunRecord) -> f64| {
            median(runs.iter().map(|record| value(record)).collect())
        };
        rows.push((
            server.clone(),
            pick(&|record| headline(record).1),
            pick(&|record| record.measurement.deliveries_per_second),
            pick(&|record| record.measurement.latency_micros.p99 as f64),
            pick(&|record| record.measurement.lost as f64),
        ));
    }
    let base = rows[0].1.max(f64::MIN_POSITIVE);
    let mut text = format!(
        "{:<15} {:>22} {:>10} {:>14} {:>10} {:>8}\n",
        "server", label, "ratio", "deliveries/s", "p99 µs", "lost"
    );
    for (server, value, deliveries, p99, lost) in &rows {
        let ratio = base / value.max(f64::MIN_POSITIVE);
        text.push_str(&format!(
            "{server:<15} {value:>22.0} {:>9.2}x {deliveries:>14.0} {p99:>10.0} {lost:>8.0}\n",
            if first.scenario == Scenario::Idle {
                1.0 / ratio
            } else {
                ratio
            }
        ));
    }
    text.push_str(&format!(
        "(ratio = {} of {} / that server's, medians of the rounds)\n",
        label, rows[0].0
    ));
    text
}

/// Bar chart of each run's headline figure, grouped by server, as SVG.
pub fn chart(records: &[RunRecord], servers: &[String], path: &Path) -> anyhow::Result<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let (label, _) = headline(first);
    let highest = records
        .iter()
        .map(|record| headline(record).1)
        .fold(0.0, f64::max)
        .max(1.0);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{:?}: {label}", first.scenario), ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..records.len() as f64, 0f64..highest * 1.1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(label)
        .draw()?;
    let colours = [
        RGBColor(200, 60, 40),
        RGBColor(60, 110, 200),
        RGBColor(80, 160, 80),
    ];
    for (position, record) in records.iter().enumerate() {
        let server_index = servers
            .iter()
            .position(|server| server == &record.provenance.server)
            .unwrap_or(0);
        let colour = colours[server_index % colours.len()];
        let value = headline(record).1;
        let left = position as f64 + 0.1;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(left, 0.0), (left + 0.8, value)],
            colour.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{} r{}", record.provenance.server, record.round),
            (left, value * 1.02 + highest * 0.01),
            ("sans-serif", 12),
        )))?;
    }
    root.present()?;
    Ok(())
}
