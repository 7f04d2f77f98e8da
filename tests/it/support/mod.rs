//! Test support: clusters of real node processes and helpers to talk to them.

pub mod cluster;
pub mod http;
pub mod lsp;
pub mod tmux;

pub use cluster::Cluster;
