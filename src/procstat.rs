//! This process's resource use (resident memory, CPU time, open descriptors) from `/proc/self`
//! and `getrlimit`, and its worker processes' from `/proc/PID`, for the node's status report. Elsewhere than Linux, or if `/proc` cannot be
//! read, the figures are 0.

/// Resident memory and cumulative CPU time of the current process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    pub rss_bytes: u64,
    /// User + system CPU time since the process started, in milliseconds.
    pub cpu_ms: u64,
    pub threads: u64,
    /// The soft limit on open file descriptors (RLIMIT_NOFILE); 0 if unknown.
    pub fd_limit: u64,
    /// File descriptors open now (entries of `/proc/self/fd`); 0 if unknown.
    pub fds_open: u64,
}

impl ProcessUsage {
    /// Reads `/proc/self/statm` and `/proc/self/stat`; zeros for what cannot be read.
    pub fn current() -> ProcessUsage {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        ProcessUsage {
            rss_bytes: rss_pages(&statm).saturating_mul(page_size()),
            cpu_ms: cpu_ticks(&stat).saturating_mul(1000) / clock_ticks_per_second(),
            threads: stat_field(&stat, 20),
            fd_limit: fd_limit(),
            fds_open: fds_open(),
        }
    }
}

/// Resident memory and CPU time of another process of ours (a Python worker), from
/// `/proc/PID`; zeros when it cannot be read (the process is gone).
pub fn of_pid(pid: u32) -> ProcessUsage {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    ProcessUsage {
        rss_bytes: rss_pages(&statm).saturating_mul(page_size()),
        cpu_ms: cpu_ticks(&stat).saturating_mul(1000) / clock_ticks_per_second(),
        threads: stat_field(&stat, 20),
        fd_limit: 0,
        fds_open: 0,
    }
}

/// The soft RLIMIT_NOFILE of this process (`u64::MAX` when unlimited), 0 if unknown.
pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        0
    }
}

/// Descriptors this process has open now, 0 if `/proc/self/fd` cannot be read.
pub fn fds_open() -> u64 {
    // The directory handle itself is one of the entries while it is being read.
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| (dir.count() as u64).saturating_sub(1))
        .unwrap_or(0)
}

/// The second field of `/proc/PID/statm`: resident pages.
fn rss_pages(statm: &str) -> u64 {
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`, in clock ticks. The command name
/// (field 2) is in parentheses and may contain spaces, so fields are counted after its `)`.
fn cpu_ticks(stat: &str) -> u64 {
    stat_field(stat, 14).saturating_add(stat_field(stat, 15))
}

/// Field `n` (numbered from 1 as in proc(5), n >= 3) of `/proc/PID/stat`, 0 if absent.
fn stat_field(stat: &str, n: usize) -> u64 {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    // After ")": field 3 (state) comes first.
    rest.split_whitespace()
        .nth(n.saturating_sub(3))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_command_name() {
        let stat = "4242 (push node (x)) S 1 2 3 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_ticks(stat), 325);
        assert_eq!(stat_field(stat, 20), 9);
        assert_eq!(cpu_ticks("garbage"), 0);
        assert_eq!(rss_pages("1000 250 30 1 0 60 0\n"), 250);
        assert_eq!(rss_pages(""), 0);
    }

    #[test]
    fn this_process_uses_memory() {
        let usage = ProcessUsage::current();
        assert!(usage.rss_bytes > 0 && usage.threads > 0, "{usage:?}");
        // stdin, stdout and stderr at least, and a limit above what is open.
        assert!(
            usage.fds_open >= 3 && usage.fd_limit > usage.fds_open,
            "{usage:?}"
        );
    }
}
