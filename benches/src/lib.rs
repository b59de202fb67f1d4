//! ws-hub's end-to-end benchmarks: the load generator (`loadgen`) and the reference server (`ref-server`) that
//! `cargo xtask bench` runs side by side with `ws-server`.
//!
//! The reference server is the same hyper + fastwebsockets stack with no hub: echo, and fan-out of one
//! pre-encoded frame to every subscriber with one coalesced write per socket per turn. What the hub achieves
//! divided by what the reference achieves, in the same run, is the hub's overhead.
//!
//! The load generator speaks WebSocket itself (pre-encoded masked frames patched in place, a read buffer
//! parsed in place), checks every delivery (nothing lost, nothing duplicated, order kept per sender, the hub's
//! offsets consecutive) and times each one with a timestamp carried in the payload. It prints its results as
//! JSON; see `xtask/src/bench.rs` for the scenarios, how they run and how they gate.
//!
//! The soak driver (`soak`) reuses the load generator's client for minutes of every kind of load at once
//! against one server, and checks that the server lets go of all of it; `cargo xtask soak` runs it.

mod client;
pub mod loadgen;
mod marker;
mod procstat;
pub mod refserver;
mod report;
mod scenario;
pub mod soak;
mod wire;
