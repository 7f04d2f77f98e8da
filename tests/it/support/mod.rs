//! Test support: clusters of real node processes and helpers to talk to them.

pub mod cluster;
pub mod http;

pub use cluster::Cluster;
