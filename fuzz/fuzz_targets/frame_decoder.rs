//! `FrameReader` fed a client byte stream split at arbitrary points.
//!
//! Input layout: byte 0 chooses permessage-deflate (bit 0) and the message limit (bits
//! 1-3); byte 1 is how many split points follow (0-15), each one byte of chunk length; the
//! rest is the byte stream a client sends after the upgrade.
//!
//! Checks: no panic; the decoded events (messages, fragments, the first error) are the
//! same whether the stream arrives whole or in chunks, so `NeedMore` really consumes
//! nothing; no data message exceeds the limit; no single allocation made by the reader
//! (or by the bounded inflate of a compressed message) exceeds twice the limit, whatever
//! length a frame header claims.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::deflate::Inflater;
use ringcast::protocol::frame::{FrameReader, Incoming, Progress};

/// Records the largest allocation requested while `WATCHING` is set on this thread.
struct WatchingAllocator;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = WATCHING.try_with(|watching| {
        if watching.get() {
            let _ = LARGEST_BYTES.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call forwards to the system allocator unchanged; `note` only reads and
// writes `Cell`s of this thread and never allocates.
unsafe impl GlobalAlloc for WatchingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: WatchingAllocator = WatchingAllocator;

/// Message limits to choose from: tiny, around the 7-bit/16-bit length boundaries, the
/// default (64 KiB) and the 16 MiB maximum the configuration allows.
const LIMITS: [usize; 8] = [1, 125, 126, 1000, 65_535, 65_536, 1 << 20, 16 << 20];

/// One decoded event, owned, for comparing the whole-input and chunked runs.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, String),
    Inflated { text: bool, data: Vec<u8> },
    InflateRefused { text: bool },
    Fragment,
    Error(ringcast::protocol::frame::FrameError),
}

/// Runs a reader over `stream` delivered in `chunks` (lengths; the rest comes last), the
/// way a connection does: append, then read until `NeedMore`.
fn decode(stream: &[u8], chunks: &[usize], deflate: bool, limit: usize) -> Vec<Event> {
    let mut reader = FrameReader::new();
    if deflate {
        reader.enable_deflate();
    }
    let mut inflater = Inflater::default();
    let mut events = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut offset = 0;
    let mut chunk_lengths = chunks.iter().copied().chain(std::iter::once(usize::MAX));
    while offset < stream.len() {
        let length = chunk_lengths
            .next()
            .unwrap_or(usize::MAX)
            .min(stream.len() - offset);
        buffer.extend_from_slice(&stream[offset..offset + length]);
        offset += length;
        loop {
            WATCHING.with(|watching| watching.set(true));
            let progress = reader.read(&mut buffer, limit);
            let (event, consumed) = match progress {
                Ok(Progress::NeedMore) => {
                    WATCHING.with(|watching| watching.set(false));
                    break;
                }
                Ok(Progress::Fragment { consumed }) => (Event::Fragment, consumed),
                Ok(Progress::Message { message, consumed }) => {
                    let event = match message {
                        Incoming::Text(bytes) => {
                            assert!(bytes.len() <= limit, "text over the limit");
                            assert!(std::str::from_utf8(bytes).is_ok(), "text not UTF-8");
                            Event::Text(bytes.to_vec())
                        }
                        Incoming::Binary(bytes) => {
                            assert!(bytes.len() <= limit, "binary over the limit");
                            Event::Binary(bytes.to_vec())
                        }
                        Incoming::Ping(bytes) => {
                            assert!(bytes.len() <= 125, "ping over 125 bytes");
                            Event::Ping(bytes.to_vec())
                        }
                        Incoming::Pong => Event::Pong,
                        Incoming::Close { code, reason } => Event::Close(code, reason.to_owned()),
                        Incoming::Compressed { text, data } => {
                            assert!(deflate, "compressed message without deflate");
                            assert!(data.len() <= limit, "compressed data over the limit");
                            match inflater.inflate(data, limit) {
                                Ok(plain) => {
                                    assert!(plain.len() <= limit, "inflated over the bound");
                                    Event::Inflated {
                                        text,
                                        data: plain.to_vec(),
                                    }
                                }
                                Err(_) => Event::InflateRefused { text },
                            }
                        }
                    };
                    (event, consumed)
                }
                Err(error) => {
                    WATCHING.with(|watching| watching.set(false));
                    events.push(Event::Error(error));
                    return events;
                }
            };
            WATCHING.with(|watching| watching.set(false));
            assert!(
                consumed > 0 && consumed <= buffer.len(),
                "bad consumed count"
            );
            let closed = matches!(event, Event::Close(..));
            events.push(event);
            buffer.drain(..consumed);
            if closed {
                return events;
            }
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let [flags, split_count, rest @ ..] = data else {
        return;
    };
    let deflate = flags & 1 != 0;
    let limit = LIMITS[usize::from((flags >> 1) & 7)];
    let split_count = usize::from(split_count & 15).min(rest.len());
    let (splits, stream) = rest.split_at(split_count);
    let chunks: Vec<usize> = splits.iter().map(|&length| usize::from(length)).collect();

    LARGEST_BYTES.with(|largest| largest.set(0));
    let whole = decode(stream, &[], deflate, limit);
    let split = decode(stream, &chunks, deflate, limit);
    let one_byte_at_a_time = decode(stream, &vec![1; stream.len()], deflate, limit);
    assert_eq!(whole, split, "events depend on where the input was split");
    assert_eq!(
        whole, one_byte_at_a_time,
        "events differ when fed byte by byte"
    );
    // The inflate step grows linearly (16 KiB) past the bound; the fragment buffer at most
    // doubles. Either way, far below a length a header merely claims.
    let largest = LARGEST_BYTES.with(Cell::get);
    assert!(
        largest <= 2 * limit + 64 * 1024,
        "an allocation of {largest} bytes with a {limit}-byte limit"
    );
});
