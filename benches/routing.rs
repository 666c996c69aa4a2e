//! Criterion benches of routing decisions: the compiled permission check (exact, prefix,
//! catch-all, glob; allocation-free, asserted by `tests/permission_alloc.rs`) and the
//! per-worker topic table (insert, remove, lookup).
//!
//! Run: `cargo bench --bench routing`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringcast::auth::PermissionSet;
use ringcast::topic::table::TopicTable;

fn compiled(permissions: &[&str]) -> PermissionSet {
    let owned: Vec<String> = permissions
        .iter()
        .map(|permission| permission.to_string())
        .collect();
    PermissionSet::compile(&owned)
}

fn permissions(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("permission_check");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (
            "exact",
            compiled(&["realtime:publisher:write:topic:chat"]),
            "chat",
        ),
        (
            "prefix",
            compiled(&["realtime:publisher:write:topic:rooms/*"]),
            "rooms/lobby/42",
        ),
        (
            "catch_all",
            compiled(&["realtime:publisher:write:topic:*"]),
            "anything/at/all",
        ),
        (
            "glob",
            compiled(&["realtime:publisher:write:topic:rooms/*/chat*"]),
            "rooms/7/chatter",
        ),
        (
            "miss_among_ten",
            compiled(&[
                "realtime:publisher:write:topic:a",
                "realtime:publisher:write:topic:b/*",
                "realtime:publisher:write:topic:c*d",
                "realtime:publisher:write:topic:e",
                "realtime:publisher:write:topic:f/*",
                "realtime:publisher:write:topic:g*h*i",
                "realtime:publisher:write:topic:j",
                "realtime:publisher:write:topic:k/*",
                "realtime:publisher:write:topic:l",
                "realtime:publisher:write:topic:m*",
            ]),
            "zzz/topic",
        ),
    ];
    for (name, set, topic) in &cases {
        group.bench_function(*name, |bench| {
            bench.iter(|| black_box(set.can_publish(black_box(topic))))
        });
    }
    group.finish();
}

fn topic_table(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("topic_table");
    let names: Vec<String> = (0..10_000).map(|index| format!("topic-{index}")).collect();
    group.throughput(Throughput::Elements(1));
    group.bench_function("subscribe_then_unsubscribe_new_topic", |bench| {
        let mut table: TopicTable<u32> = TopicTable::default();
        let mut index = 0usize;
        bench.iter(|| {
            let topic = &names[index % names.len()];
            table.subscribe(topic, index as u64, 0);
            table.unsubscribe(topic, index as u64);
            index += 1;
        })
    });
    group.bench_function("add_to_topic_of_1000", |bench| {
        let mut table: TopicTable<u32> = TopicTable::default();
        for key in 0..1_000u64 {
            table.subscribe("load", key, 0);
        }
        bench.iter(|| {
            table.subscribe("load", 5_000, 0);
            table.unsubscribe("load", 5_000);
        })
    });
    let mut table: TopicTable<u32> = TopicTable::default();
    for (index, topic) in names.iter().enumerate() {
        table.subscribe(topic, index as u64, 0);
    }
    group.bench_function("lookup_among_10000", |bench| {
        let mut index = 0usize;
        bench.iter(|| {
            index = (index + 7) % names.len();
            black_box(table.subscribers(&names[index]).len())
        })
    });
    group.finish();
}

criterion_group!(benches, permissions, topic_table);
criterion_main!(benches);
