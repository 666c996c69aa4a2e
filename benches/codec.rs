//! Criterion benches of the sans-IO protocol code on the publish path: WebSocket frame
//! decode/encode, command parsing (ours vs a generic `serde_json::Value` parse), building a
//! publication envelope once, and handing it to N subscriber queues.
//!
//! Run: `cargo bench --bench codec`. Each bench names the path it stands for in
//! ARCHITECTURE.md "A publish, end to end".

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringcast::protocol::command::parse_command;
use ringcast::protocol::envelope::{client_descriptor, publication_frame};
use ringcast::protocol::frame::{encode_client_frame, encode_frame, FrameReader, OpCode, Progress};
use std::collections::VecDeque;

/// A typical client publish command: 100-byte payload, as in the `fanout` load test.
const PUBLISH: &[u8] = br#"{"type":"publish","data":{"topic":"load","messageType":"load","payload":"@@T123456789012345@@xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","id":"42"}}"#;

/// `PUBLISH` as a masked client frame (what the reader sees on the socket).
fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_client_frame(OpCode::Text, payload, [0x5a, 0xc3, 0x17, 0x9e], &mut frame);
    frame
}

fn frames(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    let wire = masked_frame(PUBLISH);
    group.bench_function("decode_masked_text_200B", |bench| {
        let mut reader = FrameReader::new();
        bench.iter_batched_ref(
            || wire.clone(),
            |input| match reader.read(input, usize::MAX) {
                Ok(Progress::Message { consumed, .. }) => black_box(consumed),
                other => panic!("unexpected {other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("encode_text_200B", |bench| {
        let mut out = Vec::with_capacity(512);
        bench.iter(|| {
            out.clear();
            encode_frame(OpCode::Text, black_box(PUBLISH), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn commands(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("command_parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_command", |bench| {
        bench.iter(|| black_box(parse_command(black_box(PUBLISH)).is_ok()))
    });
    group.bench_function("serde_json_value", |bench| {
        bench.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(PUBLISH)).is_ok())
        })
    });
    group.bench_function("subscribe", |bench| {
        let subscribe = br#"{"type":"subscribe","data":{"topic":"notifications"}}"#;
        bench.iter(|| black_box(parse_command(black_box(subscribe)).is_ok()))
    });
    group.finish();
}

fn fan_out(criterion: &mut Criterion) {
    let client = client_descriptor(
        "4389b2ed1a7e",
        "user-01",
        &["realtime:publisher:write:topic:*".to_string()],
    );
    let payload = &br#""@@T123456789012345@@xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx""#[..];
    let mut group = criterion.benchmark_group("fan_out");
    group.bench_function("publication_frame", |bench| {
        bench.iter(|| {
            black_box(publication_frame(
                "load", "load", &client, payload, b"\"42\"", false,
            ))
        })
    });
    for subscribers in [1usize, 100, 2_000] {
        group.throughput(Throughput::Elements(subscribers as u64));
        let mut queues: Vec<VecDeque<Bytes>> = (0..subscribers)
            .map(|_| VecDeque::with_capacity(4))
            .collect();
        group.bench_function(format!("encode_once_into_{subscribers}_queues"), |bench| {
            bench.iter(|| {
                let frame = publication_frame("load", "load", &client, payload, b"\"42\"", false);
                for queue in &mut queues {
                    queue.push_back(frame.clone());
                }
                for queue in &mut queues {
                    queue.pop_front();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frames, commands, fan_out);
criterion_main!(benches);
