//! `push top`: a live terminal dashboard of the cluster (nodes, queues, daemons, deploys and
//! audit). [`collect`] gathers snapshots on the async runtime; [`ui`] holds the dashboard's
//! state and key handling, [`columns`] each pane's columns, [`draw`] draws them and [`plain`]
//! prints them for `--once`. This file owns the terminal: raw mode and the alternate screen,
//! always restored (quit, error, panic), the key loop, and handing the terminal to a `push
//! repl` child and back.

pub mod collect;
mod columns;
mod draw;
mod plain;
#[cfg(test)]
mod tests;
mod ui;

use std::io::{IsTerminal, Stdout};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;
use tokio::sync::{mpsc, watch};

use self::collect::{Collector, Snapshot};
use self::ui::{Action, Ui};
use super::target::Target;

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Any node of the cluster [default: --to, $PUSH_ADDR, or every node of `push up`]
    #[arg(value_name = "HOST:PORT")]
    pub node: Option<String>,
    #[command(flatten)]
    pub target: Target,
    /// Print one plain-text snapshot of every pane and exit (for scripts; no terminal needed)
    #[arg(long)]
    pub once: bool,
    /// Seconds between refreshes
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub interval: f64,
}

/// The latest snapshot and when it was taken (None before the first one).
type Latest = Option<(Snapshot, Instant)>;

pub async fn run(args: TopArgs) -> anyhow::Result<()> {
    let token = args.target.token()?;
    let seeds = args.target.candidates(args.node.as_deref())?;
    let mut collector = Collector::new(seeds, token.clone());
    if args.once {
        let snap = collector.collect().await;
        print!("{}", plain::plain(&snap));
        if let Some(e) = snap.error {
            bail!("{e}");
        }
        return Ok(());
    }
    if !std::io::stdout().is_terminal() {
        bail!("push top draws a live dashboard and needs a terminal, but stdout is not one; for a one-off text snapshot use `push top --once` (or `push status`)");
    }
    if !(0.1..=3600.0).contains(&args.interval) {
        bail!("--interval must be between 0.1 and 3600 seconds");
    }
    let interval = Duration::from_secs_f64(args.interval);

    let (snap_tx, snap_rx) = watch::channel::<Latest>(None);
    let (refresh_tx, mut refresh_rx) = mpsc::channel::<()>(1);
    let collecting = tokio::spawn(async move {
        loop {
            let snap = collector.collect().await;
            if snap_tx.send(Some((snap, Instant::now()))).is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                asked = refresh_rx.recv() => if asked.is_none() { return },
            }
        }
    });
    // In raw mode Ctrl-C is a key, but while a REPL child has the terminal it is a signal to
    // the whole process group: swallow it here so only the child reacts (a handler, unlike an
    // ignored signal, is not inherited by the child).
    let swallow = tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
    let ui = tokio::task::spawn_blocking(move || ui_loop(snap_rx, refresh_tx, token)).await;
    collecting.abort();
    swallow.abort();
    ui.context("the dashboard thread failed")?
}

/// Raw mode + alternate screen while alive; restored on drop (normal exit or error).
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        let mut stdout = std::io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e).context("cannot open the alternate screen");
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout));
        match terminal {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(e).context("cannot size the terminal")
            }
        }
    }

    /// Gives the terminal back (for a child), then takes it again when `f` returns.
    fn suspended<T>(&mut self, f: impl FnOnce() -> T) -> anyhow::Result<T> {
        restore();
        let out = f();
        enable_raw_mode().context("cannot switch the terminal back to raw mode")?;
        execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)
            .context("cannot reopen the alternate screen")?;
        self.terminal.clear()?;
        Ok(out)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor; safe to call twice.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// Draws, reads keys and acts on them until quit; runs on a blocking thread.
fn ui_loop(
    snaps: watch::Receiver<Latest>,
    refresh: mpsc::Sender<()>,
    token: String,
) -> anyhow::Result<()> {
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let chained = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        (*chained)(info);
    }));
    let result = (|| {
        let mut screen = Screen::enter()?;
        let mut ui = Ui::default();
        loop {
            let latest = snaps.borrow().clone();
            let snap = latest.as_ref().map(|(s, _)| s);
            let age = latest.as_ref().map(|(_, at)| at.elapsed());
            screen
                .terminal
                .draw(|f| draw::render(f, snap, &ui, age))
                .context("cannot draw the dashboard")?;
            if !event::poll(Duration::from_millis(200)).context("cannot read the terminal")? {
                continue;
            }
            let Event::Key(key) = event::read().context("cannot read the terminal")? else {
                continue;
            };
            match ui.on_key(key, snap) {
                Action::None => {}
                Action::Quit => return Ok(()),
                Action::Refresh => {
                    let _ = refresh.try_send(());
                }
                Action::Repl(id, addr) => {
                    let ended = screen.suspended(|| repl(&addr, &token))?;
                    ui.note = Some(match ended {
                        Ok(0) => format!("repl on node {id} ended"),
                        Ok(code) => format!("repl on node {id} exited with {code}"),
                        Err(e) => format!("repl on node {id}: {e:#}"),
                    });
                    let _ = refresh.try_send(());
                }
            }
        }
    })();
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| (*previous)(info)));
    result
}

/// Runs `push repl ADDR` (this same binary) on the terminal and waits for it. The token goes
/// through the environment, not the command line, so `ps` does not show it.
fn repl(addr: &str, token: &str) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("cannot find the push binary to run the REPL")?;
    println!("push top: REPL on {addr} (Ctrl-D returns to the dashboard)");
    let status = std::process::Command::new(exe)
        .arg("repl")
        .arg(addr)
        .env("PUSH_TOKEN", token)
        .status()
        .context("cannot start `push repl`")?;
    Ok(status.code().unwrap_or(-1))
}
