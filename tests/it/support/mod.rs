//! Test support: clusters of real node processes and helpers to talk to them.

pub mod cluster;

pub use cluster::Cluster;
