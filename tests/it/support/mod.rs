//! Test support: clusters of real node processes and helpers to talk to them.

pub mod cli;
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

/// The lines a child's output prints, as they come, read on a thread of their own (so a test
/// can wait for a line with a deadline instead of sleeping).
pub fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
