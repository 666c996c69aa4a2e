//! Permission checks must not allocate (PROTOCOL §2: "the check on each publish does no
//! parsing and no allocation").
//!
//! This is its own test binary because it installs a counting global allocator, which
//! would otherwise count the allocations of every other test running in parallel. The
//! counter is per thread, so the test harness's own threads do not disturb it either.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringcast::auth::PermissionSet;

/// Counts allocations made by the current thread, then delegates to the system allocator.
struct CountingAllocator;

thread_local! {
    /// Allocations (including reallocations) made by this thread so far.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method delegates to `System` with the caller's arguments unchanged; the
// counter is a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn permission_checks_do_not_allocate() {
    let permissions: Vec<String> = [
        "realtime:publisher:write:topic:chat",
        "realtime:publisher:write:topic:priv/*",
        "realtime:publisher:write:topic:rooms/*/chat*",
        "realtime:subscriber:read:topic:secure/inbound",
        "realtime:subscriber:read:topic:*",
        "realtime:admin:manage:connections",
    ]
    .iter()
    .map(|permission| permission.to_string())
    .collect();
    let set = PermissionSet::compile(&permissions);
    let topics = [
        "chat",
        "chat2",
        "priv/abc",
        "rooms/1/chatter",
        "rooms/1/talk",
        "secure/inbound",
        "ö/ü",
    ];

    let before = allocations();
    let mut granted = 0_u32;
    for _ in 0..1_000 {
        for topic in topics {
            granted += u32::from(set.can_publish(topic));
            granted += u32::from(set.can_subscribe(topic));
        }
        granted += u32::from(set.can_manage_connections());
        granted += u32::from(set.can_manage_subscribers());
    }
    let after = allocations();

    assert_eq!(after - before, 0, "permission checks allocated");
    // The counter is live: an allocation on this thread is seen.
    let probe = std::hint::black_box(vec![1_u8; 16]);
    assert!(allocations() > after && probe.len() == 16);
    // chat, priv/abc, rooms/1/chatter publish; every topic subscribes; one admin grant.
    assert_eq!(granted, 1_000 * (3 + 7 + 1));
}
