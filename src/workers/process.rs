//! Starting one worker process: the node's own executable as `push worker`, with one end of
//! a Unix socket pair as its file descriptor 3, killed by the kernel if the node dies; and
//! saying in words how a worker ended.

use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};

use super::WorkerError;

/// The descriptor number the worker finds its socket on.
pub const WORKER_FD: i32 = 3;

/// The executable to start workers from: the very file this node runs (`/proc/self/exe`
/// stays the node's own build even if the installed binary is replaced during an upgrade),
/// so node and worker always speak the same messages.
fn executable() -> std::path::PathBuf {
    let own = std::path::PathBuf::from("/proc/self/exe");
    if own.exists() {
        own
    } else {
        std::env::current_exe().unwrap_or(own)
    }
}

/// Starts `push worker` with `threads` Python threads (`label` names it in its logs; `env`,
/// an environment directory its `sys.path` starts with): its
/// process and the node's end of its socket. Call it from a runtime worker thread, never a
/// blocking-pool one: the kill-on-parent-death signal follows the thread that forked.
pub fn spawn(
    threads: usize,
    label: &str,
    env: Option<&std::path::Path>,
) -> Result<(tokio::process::Child, tokio::net::UnixStream), WorkerError> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| WorkerError::Start(format!("socket pair: {e}")))?;
    let fd = theirs.as_raw_fd();
    let mut command = std::process::Command::new(executable());
    command
        .arg0("push")
        .arg("worker")
        .arg("--fd")
        .arg(WORKER_FD.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--label")
        .arg(label)
        .stdin(Stdio::null());
    // Only the workers of an app's environment put it on `sys.path`.
    command.env_remove(crate::runtime::ENV_DIR_VAR);
    if let Some(env) = env {
        command.env(crate::runtime::ENV_DIR_VAR, env);
    }
    // SAFETY: between fork and exec only async-signal-safe calls: dup2 (which also clears
    // close-on-exec on the copy) and prctl.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, WORKER_FD) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The kernel kills the worker when the node's thread that forked it exits; the
            // node forks from a long-lived runtime thread and, on any exit, the process.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| WorkerError::Start(format!("starting {}: {e}", executable().display())))?;
    drop(theirs);
    ours.set_nonblocking(true)
        .map_err(|e| WorkerError::Start(format!("worker socket: {e}")))?;
    let socket = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| WorkerError::Start(format!("worker socket: {e}")))?;
    Ok((child, socket))
}

/// How a worker ended, in words: "was killed by signal 11 (SIGSEGV)", "exited with code 3".
pub fn describe(status: &ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGKILL => "SIGKILL",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGTERM => "SIGTERM",
            libc::SIGFPE => "SIGFPE",
            libc::SIGILL => "SIGILL",
            _ => "",
        };
        let dumped = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        if name.is_empty() {
            format!("was killed by signal {signal}{dumped}")
        } else {
            format!("was killed by signal {signal} ({name}){dumped}")
        }
    } else {
        match status.code() {
            Some(0) => "exited".to_string(),
            Some(code) => format!("exited with code {code}"),
            None => "ended".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_described() {
        assert_eq!(
            describe(&ExitStatus::from_raw(libc::SIGSEGV)),
            "was killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            describe(&ExitStatus::from_raw(3 << 8)),
            "exited with code 3"
        );
        assert_eq!(describe(&ExitStatus::from_raw(0)), "exited");
    }
}
