//! Topics: glob patterns over topic names and the per-worker topic table.
//!
//! Pure data structures: no I/O, no clocks, no threads.

pub mod pattern;
pub mod table;
