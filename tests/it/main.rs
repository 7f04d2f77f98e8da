//! Black-box tests: real `push` processes on 127.0.0.1 with free ports and temp data dirs.
//!
//! One test binary (faster to link, shares the support code). Each module is a feature area;
//! `support` starts and stops clusters and cleans up after them, also when a test fails.

mod support;

mod audit;
mod backup;
mod bad_input;
mod bench;
mod blobs;
mod channels;
mod chaos;
mod cluster;
mod code_store;
mod deps;
mod durability;
mod envs_removal;
mod eval;
mod export;
mod flood;
mod formats;
mod hostile;
mod hotpatch;
mod logs;
mod lsp;
mod lsp_editors;
mod lsp_workers;
mod members;
mod metrics;
mod node_config;
mod placement;
mod postmortem;
mod python;
mod queue;
mod quorum;
mod realms;
mod repl;
mod repl_code;
mod roles;
mod shell;
mod shell_data;
mod smoke;
mod tasks;
mod tidy;
mod tls;
mod top;
mod trace;
mod up;
mod upgrade;
mod users;
mod webapps;
mod webbench;
mod webenv;
mod workers;
