//! Results: the JSON record of a run (figures + provenance + configuration), the one-line
//! human summary, the comparison table with ratios, and the SVG chart.
//!
//! Responsibility: presentation only; every number comes from a [`Measurement`].

use crate::scenarios::{Measurement, Scenario, ScenarioOptions};
use crate::server::Provenance;
use crate::stats::ClientCpu;
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
    let client = &figures.client_cpu;
    text.push_str(&format!(
        ", client CPU {:.2} cores of {} (busiest thread {:.2})",
        client.cores_busy, client.cores_available, client.busiest_thread_cores
    ));
    if let Some(warning) = &figures.client_bound_warning {
        text.push_str(&format!("\n  WARNING: {warning}"));
    }
    text
}

/// A client thread this busy (cores) is saturated: it cannot offer more load.
pub const CLIENT_THREAD_SATURATED_CORES: f64 = 0.9;
/// The client as a whole is saturated at this fraction of the cores it may use.
pub const CLIENT_SATURATED_FRACTION: f64 = 0.9;
/// A server below this fraction of the cores it may use still had headroom.
pub const SERVER_SATURATED_FRACTION: f64 = 0.9;

/// The warning for a run whose limit was the client, not the server: the client saturated
/// (one of its threads near a whole core, or all of it near the cores it may use) while
/// the server used less than [`SERVER_SATURATED_FRACTION`] of `server_core_limit` (or its
/// CPU is unknown). `None` when the server was the limit or the client had headroom.
pub fn client_bound_warning(
    client: &ClientCpu,
    server_cores_busy: Option<f64>,
    server_core_limit: Option<f64>,
) -> Option<String> {
    let thread_saturated = client.busiest_thread_cores >= CLIENT_THREAD_SATURATED_CORES;
    let process_saturated =
        client.cores_busy >= CLIENT_SATURATED_FRACTION * client.cores_available.max(1) as f64;
    if !thread_saturated && !process_saturated {
        return None;
    }
    let client_text = format!(
        "the client used {:.2} of its {} cores (busiest thread {:.2})",
        client.cores_busy, client.cores_available, client.busiest_thread_cores
    );
    match (server_cores_busy, server_core_limit) {
        (Some(busy), Some(limit)) if busy >= SERVER_SATURATED_FRACTION * limit => None,
        (Some(busy), Some(limit)) => Some(format!(
            "client-bound: {client_text} while the server used {busy:.2} of its {limit} cores; \
             these figures measure the client (add --threads or client CPUs)"
        )),
        _ => Some(format!(
            "client-bound?: {client_text}; the server's CPU is unknown, so the client may be \
             the limit"
        )),
    }
}

/// An axis label for a count or rate: `950`, `12 k`, `1.2 M` (never `1200000.0`).
pub fn si_label(value: f64) -> String {
    // 999.7 rounds to "1000" at three digits: it takes the next unit ("1 k").
    let (scaled, unit) = match value.abs() {
        magnitude if magnitude >= 0.9995e9 => (value / 1e9, " G"),
        magnitude if magnitude >= 0.9995e6 => (value / 1e6, " M"),
        magnitude if magnitude >= 0.9995e3 => (value / 1e3, " k"),
        _ => (value, ""),
    };
    format!("{}{unit}", trimmed(scaled))
}

/// An axis label for a latency in milliseconds: `0.25 ms`, `2.5 ms`, `120 ms`, `2,300 ms`.
pub fn ms_label(milliseconds: f64) -> String {
    if milliseconds >= 1000.0 {
        let whole = milliseconds.round() as u64;
        return format!("{},{:03} ms", whole / 1000, whole % 1000);
    }
    format!("{} ms", trimmed(milliseconds))
}

/// At most three significant digits (two decimals below 10), no trailing zeros.
fn trimmed(value: f64) -> String {
    let decimals = match value.abs() {
        magnitude if magnitude >= 100.0 => 0,
        magnitude if magnitude >= 10.0 => 1,
        _ => 2,
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_are_short_and_readable() {
        assert_eq!(si_label(0.0), "0");
        assert_eq!(si_label(950.0), "950");
        assert_eq!(si_label(999.7), "1 k");
        assert_eq!(si_label(1_000.0), "1 k");
        assert_eq!(si_label(999_800.0), "1 M");
        assert_eq!(si_label(12_500.0), "12.5 k");
        assert_eq!(si_label(400_000.0), "400 k");
        assert_eq!(si_label(1_200_000.0), "1.2 M");
        assert_eq!(si_label(1_250_000.0), "1.25 M");
        assert_eq!(si_label(2_000_000_000.0), "2 G");
        assert_eq!(ms_label(0.25), "0.25 ms");
        assert_eq!(ms_label(2.5), "2.5 ms");
        assert_eq!(ms_label(52.0), "52 ms");
        assert_eq!(ms_label(120.4), "120 ms");
        assert_eq!(ms_label(2_300.0), "2,300 ms");
    }

    fn client(cores_busy: f64, busiest_thread_cores: f64) -> ClientCpu {
        ClientCpu {
            cpu_seconds: cores_busy,
            cores_busy,
            cores_available: 2,
            busiest_thread_cores,
        }
    }

    #[test]
    fn a_saturated_client_beside_an_idle_server_is_flagged() {
        let warning =
            client_bound_warning(&client(0.97, 0.95), Some(0.5), Some(1.0)).expect("client-bound");
        assert!(warning.starts_with("client-bound:"), "{warning}");
        assert!(warning.contains("0.50 of its 1 cores"), "{warning}");
        // The whole client near its cores, no single thread saturated.
        assert!(client_bound_warning(&client(1.9, 0.6), Some(0.5), Some(1.0)).is_some());
        // Unknown server CPU: flagged as possibly client-bound.
        let unknown = client_bound_warning(&client(0.97, 0.95), None, None).expect("flag");
        assert!(unknown.starts_with("client-bound?:"), "{unknown}");
    }

    #[test]
    fn a_saturated_server_or_a_client_with_headroom_is_not_flagged() {
        assert_eq!(
            client_bound_warning(&client(0.97, 0.95), Some(0.99), Some(1.0)),
            None
        );
        assert_eq!(
            client_bound_warning(&client(0.4, 0.4), Some(0.3), Some(1.0)),
            None
        );
    }
}
