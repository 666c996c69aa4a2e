//! The broker: per-worker core (sessions, local topic tables, fan-out, cross-worker mesh).
//!
//! Takes events (a decoded message, a tick, a mesh message, an admin call) and returns
//! actions (frames queued on sessions, messages queued for other workers, typed closes).
//! No sockets and no monoio here: `runtime` owns I/O. (The frame file is a store: frames
//! are written to it here, and sent from it by the runtime.)

pub mod anonymous;
pub mod answer;
pub mod apps;
pub mod frame_file;
pub mod interest;
pub mod mesh;
pub mod session;
pub mod worker;

/// Test builds only (cargo feature `fault-injection`, never in release): a publication to
/// this topic panics the worker that handles it, so that tests can check the panic policy
/// (README "Limits and failure behaviour": the process aborts at once).
#[cfg(feature = "fault-injection")]
pub const FAULT_PANIC_TOPIC: &str = "fault-injection/panic-worker";
