//! The simd-json experiment (issue 16, item 6; docs/decisions/simd-json.md): command parsing
//! as ringcast does it (`parse_command`: one serde_json pass, the payload kept as its raw
//! byte span) against simd-json, at 200 B, 4 KiB and 64 KiB commands.
//!
//! simd-json parses in place (it unescapes into the buffer) and has no raw-value type, so
//! keeping the payload byte for byte means parsing a copy and writing the payload back out.
//! Two simd-json figures bound its cost: `simd_parse` (copy into a reused buffer + parse
//! with reused buffers: the least it could cost) and `simd_parse_reencode` (the same plus
//! serializing the payload again, which is what delivering it would need).
//!
//! Run: `cargo bench --bench json_parse`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringcast::protocol::command::{parse_command, Command};
use simd_json::prelude::*;

/// A publish command of about `bytes` bytes: a payload object of short string fields.
fn command(bytes: usize) -> Vec<u8> {
    let mut payload = String::from("{");
    let mut index = 0;
    while payload.len() + 120 < bytes {
        if index > 0 {
            payload.push(',');
        }
        payload.push_str(&format!(
            r#""field{index}":"value {index} with some text\n","n{index}":{index}.5"#
        ));
        index += 1;
    }
    payload.push('}');
    format!(
        r#"{{"type":"publish","data":{{"topic":"chat/room-1","messageType":"text","payload":{payload},"id":"k3j9x0a1b2"}}}}"#
    )
    .into_bytes()
}

fn parse(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("command_parse");
    for (name, size) in [("200B", 200), ("4KiB", 4096), ("64KiB", 65536)] {
        let input = command(size);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("serde_json_raw_payload_{name}"), |bench| {
            bench.iter(|| match parse_command(black_box(&input)) {
                Ok(Command::Publish(publication)) => publication.payload.len(),
                _ => unreachable!("a valid publish"),
            })
        });
        let mut copy = Vec::with_capacity(input.len());
        let mut buffers = simd_json::Buffers::new(input.len());
        group.bench_function(format!("simd_parse_{name}"), |bench| {
            bench.iter(|| {
                copy.clear();
                copy.extend_from_slice(black_box(&input));
                let value = simd_json::to_borrowed_value_with_buffers(&mut copy, &mut buffers)
                    .expect("valid JSON");
                value["data"]["topic"].as_str().map(str::len)
            })
        });
        let mut copy = Vec::with_capacity(input.len());
        let mut buffers = simd_json::Buffers::new(input.len());
        let mut out = Vec::with_capacity(input.len());
        group.bench_function(format!("simd_parse_reencode_{name}"), |bench| {
            bench.iter(|| {
                copy.clear();
                copy.extend_from_slice(black_box(&input));
                let value = simd_json::to_borrowed_value_with_buffers(&mut copy, &mut buffers)
                    .expect("valid JSON");
                out.clear();
                value["data"]["payload"].write(&mut out).expect("writes");
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
