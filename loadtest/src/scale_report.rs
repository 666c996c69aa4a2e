//! What a `scale` run reports: its record (the JSON), the terminal summary and the chart.
//!
//! Responsibility: shape and show figures [`crate::scale`] measured; measure nothing.

use crate::report;
use crate::server::Provenance;
use serde::Serialize;
use std::path::Path;

/// One broadcast's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BroadcastResult {
    pub slot: usize,
    /// Node index whose HTTP API published it.
    pub through_node: usize,
    pub after_kill: bool,
    /// Connections that had to receive it (open and ready when it was published).
    pub eligible: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Publish (HTTP request sent) to the last connection's receipt.
    pub completion_ms: Option<f64>,
    pub complete: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeResult {
    pub name: String,
    pub address: String,
    pub pid: u32,
    /// Connections assigned to it at the start (round-robin).
    pub connections: u64,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    pub rss_per_connection_bytes: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct KillResult {
    pub node: usize,
    pub connections_to_move: u64,
    /// Kill to every connection open again.
    pub all_reconnected_ms: Option<f64>,
    /// Kill to every connection open and warm through every live node.
    pub all_ready_ms: Option<f64>,
    pub reconnects: u64,
}

#[derive(Debug, Serialize)]
pub struct ScaleRecord {
    pub scenario: &'static str,
    pub provenance: Provenance,
    pub nats_server_version: String,
    /// The harness's build profile; the nodes run `ringcast_binary` (by default the one
    /// beside the harness, so the same profile).
    pub harness_build_profile: &'static str,
    pub ringcast_binary: String,
    pub options: serde_json::Value,
    pub connections: u64,
    pub client_processes: usize,
    /// Start of the clients to every welcome.
    pub establish_seconds: Option<f64>,
    pub handshakes_per_second: Option<f64>,
    /// Start of the clients to every connection warm on every node.
    pub ready_seconds: Option<f64>,
    pub nodes: Vec<NodeResult>,
    pub broadcasts: Vec<BroadcastResult>,
    pub kill: Option<KillResult>,
    pub total_lost: u64,
    pub total_duplicates: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub client_process_pids: Vec<u32>,
}

/// Summary lines for the terminal.
pub fn summary(record: &ScaleRecord) -> String {
    let mut text = format!(
        "scale: {} connections, {} nodes, {} client processes; established in {} ({} handshakes/s), all ready in {}\n",
        record.connections,
        record.nodes.len(),
        record.client_processes,
        record.establish_seconds.map_or("—".into(), |s| format!("{s:.2} s")),
        record.handshakes_per_second.map_or("—".into(), |r| format!("{r:.0}")),
        record.ready_seconds.map_or("—".into(), |s| format!("{s:.2} s")),
    );
    for node in &record.nodes {
        text.push_str(&format!(
            "  {} ({} connections): RSS {} → {} MiB, {} B/connection\n",
            node.name,
            node.connections,
            node.rss_before_bytes
                .map_or("—".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            node.rss_after_bytes
                .map_or("—".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            node.rss_per_connection_bytes
                .map_or("—".into(), |b| format!("{b:.0}")),
        ));
    }
    if let Some(kill) = &record.kill {
        text.push_str(&format!(
            "  killed node {} ({} connections): all reconnected in {}, all ready in {}, {} reconnects\n",
            kill.node,
            kill.connections_to_move,
            kill.all_reconnected_ms.map_or("—".into(), report::ms_label),
            kill.all_ready_ms.map_or("—".into(), report::ms_label),
            kill.reconnects
        ));
    }
    text.push_str(&format!(
        "  lost {}, duplicates {}, errors {:?}\n",
        record.total_lost, record.total_duplicates, record.errors
    ));
    text
}

/// SVG: RSS per connection of each node (bars) and each broadcast's completion time.
pub fn chart(record: &ScaleRecord, path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let rss: Vec<f64> = record
        .nodes
        .iter()
        .map(|node| node.rss_per_connection_bytes.unwrap_or(0.0))
        .collect();
    let times: Vec<f64> = record
        .broadcasts
        .iter()
        .map(|result| result.completion_ms.unwrap_or(0.0))
        .collect();
    for (area, values, caption, unit, colour) in [
        (
            &left,
            &rss,
            "RSS per connection, per node",
            "bytes",
            RGBColor(60, 110, 200),
        ),
        (
            &right,
            &times,
            "Broadcast: publish to last receipt",
            "ms",
            RGBColor(200, 60, 40),
        ),
    ] {
        let highest = values.iter().copied().fold(0.0, f64::max).max(1.0);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{caption} ({} connections)", record.connections),
                ("sans-serif", 16),
            )
            .margin(20)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..values.len().max(1) as f64, 0f64..highest * 1.15)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(unit)
            .draw()?;
        for (position, &value) in values.iter().enumerate() {
            let x = position as f64 + 0.15;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, 0.0), (x + 0.7, value)],
                colour.filled(),
            )))?;
            let label = if std::ptr::eq(values, &rss) {
                format!("node {position}: {value:.0} B")
            } else {
                let after = record.broadcasts[position].after_kill;
                format!(
                    "#{position}{}: {value:.1} ms",
                    if after { " (after kill)" } else { "" }
                )
            };
            chart.draw_series(std::iter::once(Text::new(
                label,
                (x, value + highest * 0.03),
                ("sans-serif", 11),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}
