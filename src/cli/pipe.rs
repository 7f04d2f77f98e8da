//! A broken pipe ends a printing command quietly, as other command-line tools do:
//! `push logs | head -1` exits when `head` has read its line instead of panicking in `println!`.

use super::Command;

/// Whether `command` is a one-shot command whose only output is its printout. Long-running
/// ones (a node, `push up`, the REPL, the dashboard, the language server) keep Rust's default
/// (SIGPIPE ignored, EPIPE returned) so a closed socket or child pipe never ends them.
fn prints_and_exits(command: &Command) -> bool {
    !matches!(
        command,
        Command::Node(_) | Command::Up(_) | Command::Repl(_) | Command::Top(_) | Command::Lsp(_)
    )
}

/// Restores the default SIGPIPE action for printing commands, so writing to a closed pipe
/// ends the process silently (exit by signal, as `cat` or `grep` do) instead of a panic.
pub fn exit_quietly_on_broken_pipe(command: &Command) {
    if prints_and_exits(command) {
        // SAFETY: called once at start-up before any thread is spawned; SIG_DFL is a valid
        // disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}
