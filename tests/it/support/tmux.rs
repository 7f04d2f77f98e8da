//! Drives a program in a real pseudo-terminal through tmux (a private server per test):
//! type keys, read the screen, wait for text.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session running one command; killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a 160x50 terminal.
    pub fn start(command: &str) -> Tmux {
        let socket = format!("push-test-{}", crate::support::cluster::free_port());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "50",
                command,
            ])
            .status()
            .expect("tmux is required for the REPL tests (scripts/test installs it)");
        assert!(status.success(), "tmux failed to start");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types literal text (no Enter).
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "0", "-l", text]);
    }

    /// Sends named keys: "Enter", "Tab", "C-c", "C-d".
    pub fn key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "0", key]);
    }

    /// Types a line and presses Enter.
    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.key("Enter");
    }

    /// The visible screen plus scrollback.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "0", "-S", "-200"])
    }

    /// Waits until the screen contains `text` `count` times; returns the screen.
    pub fn wait_for_n(&self, text: &str, count: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= count {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {text:?} x{count}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for(&self, text: &str, within: Duration) -> String {
        self.wait_for_n(text, 1, within)
    }

    /// A tmux format evaluated for the pane, e.g. `#{alternate_on}` (1 while the program
    /// shows the alternate screen).
    pub fn format(&self, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", "0", format])
            .trim()
            .to_string()
    }

    /// Whether the program has exited (the pane is gone).
    pub fn exited(&self) -> bool {
        !Command::new("tmux")
            .args(["-L", &self.socket, "has-session"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- terminal ---\n{}", self.screen());
        }
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
