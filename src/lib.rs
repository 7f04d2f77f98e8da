//! Push: a fault-tolerant application server for Python code.
//!
//! A tour of the crate, in the order data flows through it:
//! - [`cli`]: turns command-line arguments into checked configs and runs a subcommand.
//! - [`assemble`]: puts a node together from its config (edge, tasks, node, runtime, Raft).
//! - [`config`]: a node's settings from a RON file and flags.
//! - [`server`]: one TCP listener per node; authenticates, then serves clients and peers.
//! - [`ops`]: request handling by family (kv, queue, ts, code, eval, tasks, cluster).
//! - [`node`]: a running node's primitives (propose, read, forward, ask).
//! - [`consensus`]: openraft glue — durable log, peer network, state machine.
//! - [`workers`]: the node's Python worker processes — start, supervise, hand them work.
//! - [`runtime`]: embedded CPython, inside each worker process (`push worker`) — app code at
//!   HEAD, the `push` module, HTTP handlers — and the messages between node and worker.
//! - [`model`]: the deterministic replicated state (kv maps, code store, queues, timeseries,
//!   node and task registries) and `apply`.
//! - [`tasks`]: heartbeats, the leader's placement of daemons and firing of schedules.
//! - [`shutdown`]: the signal every task hears when the node stops.
//! - [`metrics`]: Prometheus counters (the `/metrics` page is `server::metrics_page`).
//! - [`logs`]: the ring of structured log records behind `push logs`.
//! - [`procstat`]: the process's memory and CPU time, for status reports.
//! - [`clock`]: the wall clock, read by proposers (never inside apply).
//! - [`join`]: waiting on several futures at once.
//!
//! The wire protocol and its client are the `push-protocol` crate, shared with every front end.

pub mod assemble;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consensus;
pub mod join;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod node;
pub mod ops;
pub mod procstat;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod tasks;
pub mod workers;

/// The name nodes give themselves when one asks another something: their requests are the
/// cluster's own work, not a person's, so the audit log does not record them.
pub const NODE_CLIENT: &str = "push-node";
