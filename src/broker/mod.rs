//! The broker: per-worker core (sessions, local topic tables, fan-out, cross-worker mesh).
//!
//! Takes events (a decoded message, a tick, a mesh message, an admin call) and returns
//! actions (frames queued on sessions, messages queued for other workers, typed closes).
//! No sockets and no monoio here: `runtime` owns I/O.

pub mod anonymous;
pub mod apps;
pub mod interest;
pub mod mesh;
pub mod session;
pub mod worker;
