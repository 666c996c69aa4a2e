//! The broker: per-worker core (sessions, local topic tables, fan-out, cross-worker mesh).
//!
//! Takes events (a decoded message, a tick, a mesh message, an admin call) and returns
//! actions (frames queued on sessions, messages queued for other workers, typed closes).
//! No sockets, no syscalls and no monoio here: `runtime` owns I/O. Frames of large
//! fan-outs go to a store the runtime provides ([`frame_store::FrameStore`]); the broker
//! only carries the opaque handles, and the runtime releases their space.

pub mod anonymous;
pub mod apps;
pub mod bus_link;
pub mod frame_store;
pub mod interest;
pub mod mesh;
pub mod outbound;
pub mod outbox;
pub mod session;
pub mod worker;

/// Test builds only (cargo feature `fault-injection`, never in release): a publication to
/// this topic panics the worker that handles it, so that tests can check the panic policy
/// (README "Limits and failure behaviour": the process aborts at once).
#[cfg(feature = "fault-injection")]
pub const FAULT_PANIC_TOPIC: &str = "fault-injection/panic-worker";
