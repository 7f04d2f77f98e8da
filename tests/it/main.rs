//! Black-box tests: real `push` processes on 127.0.0.1 with free ports and temp data dirs.
//!
//! One test binary (faster to link, shares the support code). Each module is a feature area;
//! `support` starts and stops clusters and cleans up after them, also when a test fails.

mod support;

mod bad_input;
mod cluster;
mod code_store;
mod eval;
mod lsp;
mod python;
mod queue;
mod repl;
mod tasks;
mod tidy;
mod top;
