//! Starting one worker process: the node's own executable as `push worker`, with one end of
//! a Unix socket pair as its file descriptor 3, killed by the kernel if the node dies; saying
//! in words how a worker ended; and removing the temporary folder (`push-worker-PID-*`, its
//! copies of the versions' files) of a worker that ended without removing it itself.

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

/// Starts `push worker` with `config`'s Python threads, compiled-code cache and shared folder
/// of versions' files (`label` names it in its logs; `env`, an environment directory its
/// `sys.path` starts with; `owner`, the app whose own pool it is in): its process and the
/// node's end of its socket. Call it from a runtime worker thread, never a
/// blocking-pool one: the kill-on-parent-death signal follows the thread that forked.
pub fn spawn(
    config: &super::PoolConfig,
    label: &str,
    env: Option<&std::path::Path>,
    owner: Option<&str>,
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
        .arg(config.threads.to_string())
        .arg("--label")
        .arg(label)
        .stdin(Stdio::null());
    // Only the workers of an app's environment put it on `sys.path`.
    command.env_remove(crate::runtime::ENV_DIR_VAR);
    if let Some(env) = env {
        command.env(crate::runtime::ENV_DIR_VAR, env);
    }
    command.env_remove(crate::runtime::code_cache::CACHE_DIR_VAR);
    if let Some(dir) = &config.code_cache {
        command.env(crate::runtime::code_cache::CACHE_DIR_VAR, dir);
    }
    command.env_remove(crate::runtime::FILES_DIR_VAR);
    if let Some(dir) = &config.files_dir {
        command.env(crate::runtime::FILES_DIR_VAR, dir);
    }
    // Only the workers of an app's own pool hold its secrets in `os.environ`.
    command.env_remove(crate::runtime::POOL_APP_VAR);
    if let Some(app) = owner {
        command.env(crate::runtime::POOL_APP_VAR, app);
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

/// The name prefix of the temporary folders of process `pid`: a worker's own (`files.py`
/// `root`, in the temporary directory it inherits from the node) and a node's shared folder
/// of versions' files ([`make_files_dir`]).
fn temp_prefix(pid: u32) -> String {
    format!("push-worker-{pid}-")
}

/// Makes the node's folder for the versions' files its workers share (see `files.py`), named
/// as a worker's folder with the node's pid, so a node start removes it once this node is
/// gone, however it ended.
pub fn make_files_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let tag: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!(
        "{}files-{tag:016x}",
        temp_prefix(std::process::id())
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Removes the temporary folders of worker `pid` (it has ended); says how many went.
pub fn remove_temp(pid: u32) -> usize {
    remove_temps_in(&std::env::temp_dir(), |p| p == pid)
}

/// Removes the temporary folders of workers that no longer run (left by workers killed while
/// no node watched them: a node that was itself killed). Called at node start.
pub fn remove_stale_temps() -> usize {
    remove_temps_in(&std::env::temp_dir(), |pid| !alive(pid))
}

/// Whether a process `pid` exists (one of another user counts as existing).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the `push-worker-PID-*` folders directly in `dir` whose PID `gone` accepts.
fn remove_temps_in(dir: &std::path::Path, gone: impl Fn(u32) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("push-worker-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !name.to_string_lossy().starts_with(&temp_prefix(pid)) || !gone(pid) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            // Another node of this machine removed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                folder = %entry.path().display(),
                "cannot remove an ended python worker's temporary folder: {e}"
            ),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_folders_of_ended_workers_go() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "push-worker-11-abc",
            "push-worker-11-def",
            "push-worker-12-abc",
            "push-worker-x-abc",
            "other-11-abc",
        ] {
            std::fs::create_dir_all(dir.path().join(name).join("main/v1")).unwrap();
        }
        std::fs::write(dir.path().join("push-worker-13-file"), "x").unwrap();
        assert_eq!(remove_temps_in(dir.path(), |pid| pid == 11 || pid == 13), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "other-11-abc",
                "push-worker-12-abc",
                "push-worker-13-file",
                "push-worker-x-abc"
            ]
        );
        assert!(alive(std::process::id()));
    }

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
