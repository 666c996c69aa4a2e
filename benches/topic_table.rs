//! Criterion bench of one large topic in the per-worker topic table: 100,000 subscribes
//! into an empty topic, then 100,000 unsubscribes (in a scrambled order) back to empty —
//! what a worker does when every connection joins `main` and then leaves. With a scan per
//! call this is O(n²); with `topic::subscribers`' index it is O(n).
//!
//! Before the criterion groups it prints the heap bytes the table holds per subscriber
//! for topics of several sizes (a counting allocator wraps the system one), so the index's
//! memory is measured beside its time.
//!
//! Run: `cargo bench --bench topic_table`. Figures: README, "Topic tables".

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use ringcast::topic::table::TopicTable;
use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Subscribers of the measured topic (the figure).
const SUBSCRIBERS: usize = 100_000;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        ALLOCATED_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED_BYTES.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Distinct keys shaped like connection ids (40 scrambled bits above a worker index):
/// multiplying by an odd constant is a bijection on 40 bits.
fn keys(count: usize) -> Vec<u64> {
    (0..count as u64)
        .map(|index| ((index.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xff_ffff_ffff) << 8) | 1)
        .collect()
}

/// The handle the broker stores is an `Rc<Session>`: one pointer, cloned per subscribe.
type Handle = Rc<u32>;

fn filled(keys: &[u64], handle: &Handle) -> TopicTable<Handle> {
    let mut table = TopicTable::default();
    for key in keys {
        table.subscribe("main", *key, handle.clone());
    }
    table
}

/// Prints the table's heap bytes for one topic of `count` subscribers (everything the
/// table allocates: its map, the topic's name, the list and, when large, the index).
fn report_memory() {
    let handle: Handle = Rc::new(0);
    for count in [1, 10, 63, 64, 1_000, 10_000, SUBSCRIBERS] {
        let keys = keys(count);
        let before = ALLOCATED_BYTES.load(Ordering::Relaxed);
        let table = filled(&keys, &handle);
        let bytes = ALLOCATED_BYTES.load(Ordering::Relaxed) - before;
        assert_eq!(table.subscribers("main").len(), count);
        drop(table);
        println!(
            "topic_table memory: one topic of {count} subscribers: {bytes} heap bytes, {:.1} per subscriber",
            bytes as f64 / count as f64
        );
    }
}

fn one_topic(criterion: &mut Criterion) {
    report_memory();
    let handle: Handle = Rc::new(0);
    let keys = keys(SUBSCRIBERS);
    // Unsubscribe in a scrambled order (a stride coprime to the count), not the order of
    // arrival, as connections leave.
    let leaving: Vec<u64> = (0..SUBSCRIBERS)
        .map(|index| keys[(index * 7_919) % SUBSCRIBERS])
        .collect();
    let mut group = criterion.benchmark_group("topic_table_one_topic");
    // One fill takes seconds with a scan per call: flat sampling runs each sample once.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("subscribe_100000", |bench| {
        bench.iter_batched(
            TopicTable::<Handle>::default,
            |mut table| {
                for key in &keys {
                    table.subscribe("main", *key, handle.clone());
                }
                table
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("unsubscribe_100000", |bench| {
        bench.iter_batched(
            || filled(&keys, &handle),
            |mut table| {
                for key in &leaving {
                    black_box(table.unsubscribe("main", *key));
                }
                assert_eq!(table.topic_count(), 0);
                table
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, one_topic);
criterion_main!(benches);
