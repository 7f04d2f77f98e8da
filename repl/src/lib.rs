//! push-repl: the terminal REPL. Python typed here runs inside a live Push node.
//!
//! Layout:
//! - [`conn`]: the connection to the current node (and the others): session, blocking calls.
//! - [`error`]: [`ReplError`] (a failed call, saying what to do next) and [`DeployError`].
//! - [`highlighter`], [`completer`], [`validator`], [`prompt`]: reedline extension points,
//!   one file each; completion and completeness come from the live node.
//! - [`commands`]: the `:meta` commands.
//! - [`output`]: printing values, streams and tracebacks.
//! - [`pm`]: the post-mortem view (`:errors`, `:pm`, `:frame`, `:replay`) and `:trace`.
//! - [`script`]: piped stdin — run statements, stop at the first error.
//! - [`plain`]: line mode for dumb terminals (an Emacs comint buffer).

pub mod commands;
pub mod completer;
pub mod conn;
pub mod error;
pub mod highlighter;
pub mod output;
pub mod plain;
pub mod pm;
pub mod prompt;
pub mod script;
pub mod validator;
pub mod views;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use reedline::{
    default_emacs_keybindings, ColumnarMenu, DefaultHinter, Emacs, FileBackedHistory, KeyCode,
    KeyModifiers, MenuBuilder, Reedline, ReedlineEvent, ReedlineMenu, Signal,
};

pub use conn::Conn;
pub use error::{DeployError, ReplError};

/// Deploys directory `dir` as app `app` to the node at `addr` with `token`; returns the line
/// to print.
pub type DeployFn = dyn Fn(&str, &str, &str, &str) -> Result<String, DeployError> + Send + Sync;

/// Work the REPL delegates to its host program (the `push` binary), so this crate stays a
/// front end: deploying needs the code store's file rules, which live in the node crate.
pub struct Hooks {
    /// Deploy a directory: `(addr, token, app, dir)`.
    pub deploy: Box<DeployFn>,
}

/// How to start.
pub struct Config {
    pub addr: String,
    pub token: String,
    /// History file; None keeps history in memory only.
    pub history: Option<PathBuf>,
}

/// Runs the REPL until Ctrl-D or `:quit`; returns the process exit code. Call it from a
/// blocking thread: node calls go through `handle`.
pub fn run(config: Config, hooks: Hooks, handle: tokio::runtime::Handle) -> i32 {
    let conn = Arc::new(Conn::new(config.addr, config.token, handle));
    if !std::io::stdin().is_terminal() {
        return script::run(&conn, &hooks);
    }
    if let Err(e) = conn.connect() {
        eprintln!("{}", output::error_text(&e));
        eprintln!("(the REPL stays open: `:reconnect` or `:use ID` when the node is back)");
    }
    println!("{}", commands::banner(&conn));
    if plain::wanted() {
        return plain::run(&conn, &hooks);
    }
    let mut keybindings = default_emacs_keybindings();
    keybindings.add_binding(
        KeyModifiers::NONE,
        KeyCode::Tab,
        ReedlineEvent::UntilFound(vec![
            ReedlineEvent::Menu("completion_menu".to_string()),
            ReedlineEvent::MenuNext,
        ]),
    );
    let mut editor = Reedline::create()
        .with_edit_mode(Box::new(Emacs::new(keybindings)))
        .with_highlighter(Box::new(highlighter::PythonHighlighter))
        .with_validator(Box::new(validator::NodeValidator::new(conn.clone())))
        .with_completer(Box::new(completer::NodeCompleter::new(conn.clone())))
        .with_menu(ReedlineMenu::EngineCompleter(Box::new(
            ColumnarMenu::default().with_name("completion_menu"),
        )))
        .with_hinter(Box::new(DefaultHinter::default()));
    if let Some(path) = config.history {
        match FileBackedHistory::with_file(10_000, path.clone()) {
            Ok(history) => editor = editor.with_history(Box::new(history)),
            Err(e) => eprintln!("history disabled ({}): {e}", path.display()),
        }
    }
    loop {
        let prompt = prompt::NodePrompt::from(&conn);
        match editor.read_line(&prompt) {
            Ok(Signal::Success(line)) => {
                let line = line.trim_end();
                if line.trim().is_empty() {
                    continue;
                }
                if let Some(meta) = line.trim_start().strip_prefix(':') {
                    match commands::run(&conn, &hooks, meta) {
                        commands::Flow::Continue => {}
                        commands::Flow::Quit => return 0,
                    }
                } else {
                    output::eval_and_print(&conn, line);
                }
            }
            Ok(Signal::CtrlC) => continue,
            Ok(Signal::CtrlD) => return 0,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("terminal error: {e}");
                return 1;
            }
        }
    }
}
