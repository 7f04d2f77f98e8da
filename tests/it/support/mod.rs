//! Test support: clusters of real node processes and helpers to talk to them.

pub mod cluster;
pub mod eval;
pub mod http;
pub mod linearizable;
pub mod lsp;
pub mod proxy;
pub mod raw;
pub mod tmux;
pub mod total_queue;

pub use cluster::Cluster;
