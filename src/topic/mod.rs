//! Topics: glob patterns over topic names, the per-worker topic table and the subscriber
//! set of one topic.
//!
//! Pure data structures: no I/O, no clocks, no threads.

pub mod pattern;
pub mod subscribers;
pub mod table;
