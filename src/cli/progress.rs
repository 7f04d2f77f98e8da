//! Progress lines for long operations: redrawn in place on a terminal, a few lines otherwise.

use std::io::{IsTerminal, Write};

/// A counter shown on stderr.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    tty: bool,
    last_quarter: u64,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64) -> Progress {
        Progress {
            label: label.into(),
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            last_quarter: 0,
        }
    }

    /// Advances by `n` and redraws.
    pub fn inc(&mut self, n: u64, detail: &str) {
        self.done = (self.done + n).min(self.total);
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(
                err,
                "\r\x1b[2K{} {}/{} ({pct}%) {detail}",
                self.label, self.done, self.total
            );
            let _ = err.flush();
        } else if pct / 25 > self.last_quarter || self.done == self.total {
            self.last_quarter = pct / 25;
            let _ = writeln!(
                err,
                "{} {}/{} ({pct}%) {detail}",
                self.label, self.done, self.total
            );
        }
    }

    /// Ends the line.
    pub fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}
