//! Running code on the node: one streamed eval collected into stdout, stderr and a result,
//! and locating the file and line a traceback points to.

use push_protocol::{EvalResult, Op, PyException, Reply, Stream};

use crate::error::LspError;
use crate::link::Link;

/// Cap on collected output; the node caps streams too, this keeps the editor safe.
const MAX_OUTPUT: usize = 256 * 1024;

/// What one eval produced.
pub struct Ran {
    pub result: EvalResult,
    pub stdout: String,
    pub stderr: String,
}

fn push_capped(buf: &mut String, text: &str) {
    if buf.len() >= MAX_OUTPUT {
        return;
    }
    let room = MAX_OUTPUT - buf.len();
    if text.len() <= room {
        buf.push_str(text);
    } else {
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        buf.push_str(&text[..cut]);
        buf.push_str("\n[output cut by push lsp]\n");
    }
}

/// Evaluates `code` in `session` (or a throwaway namespace) or inside `module`, collecting
/// its output. Waits as long as the code runs, but gives up when the connection drops.
pub async fn run(
    link: &Link,
    session: Option<u64>,
    code: String,
    module: Option<String>,
) -> Result<Ran, LspError> {
    run_watched(link, session, code, module, &|_| {}).await
}

/// [`run`], calling `on_stuck` with the node's notice if the eval has not stopped after an
/// interrupt (the next interrupt then restarts its worker).
pub async fn run_watched(
    link: &Link,
    session: Option<u64>,
    code: String,
    module: Option<String>,
    on_stuck: &(dyn Fn(&str) + Send + Sync),
) -> Result<Ran, LspError> {
    let client = link.client().await?;
    let mut generation = link.generation();
    let mut replies = match client
        .call_stream(Op::Eval {
            session,
            code,
            module,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return Err(link.failed(&client, e)),
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    loop {
        let next = tokio::select! {
            next = replies.recv() => next,
            _ = generation.changed() => {
                return Err(LspError::Unreachable(format!(
                    "the connection to {} was lost while the code ran",
                    client.addr()
                )))
            }
        };
        match next {
            Some(Ok(Reply::Output { stream, text })) => match stream {
                Stream::Stdout => push_capped(&mut stdout, &text),
                Stream::Stderr => {
                    if text.starts_with(push_protocol::EVAL_STUCK_NOTICE) {
                        on_stuck(&text);
                    }
                    push_capped(&mut stderr, &text)
                }
            },
            Some(Ok(Reply::Evaluated(result))) => {
                return Ok(Ran {
                    result: *result,
                    stdout,
                    stderr,
                })
            }
            Some(Ok(other)) => return Err(LspError::Unexpected(format!("{other:?}"))),
            Some(Err(body)) => {
                return Err(LspError::Node(push_protocol::ClientError::Server(body)))
            }
            None => {
                let e = push_protocol::ClientError::Closed {
                    addr: client.addr().to_string(),
                    reason: "the connection closed before the eval finished".into(),
                };
                return Err(link.failed(&client, e));
            }
        }
    }
}

/// Which file a traceback line is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The text that was sent for evaluation (`<eval-N>` on the node).
    Evaluated,
    /// A deployed module, by its path relative to the app root (`pkg/mod.py`).
    AppFile(String),
}

/// A deployed module's file name on the node is `APP@vN/PATH`: returns PATH.
pub fn app_path(filename: &str) -> Option<&str> {
    let (label, path) = filename.split_once('/')?;
    let (app, version) = label.rsplit_once("@v")?;
    (!app.is_empty() && !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
        .then_some(path)
}

fn place_of(filename: &str, eval_frames: bool) -> Option<Place> {
    if filename.starts_with("<eval-") {
        return eval_frames.then_some(Place::Evaluated);
    }
    app_path(filename).map(|p| Place::AppFile(p.to_string()))
}

/// The innermost place in the editor's files that `exc` points to, with its 1-based line.
/// `eval_frames`: whether `<eval-N>` frames are the evaluated text (false for hot patches,
/// whose `<eval-N>` is the patching code, not the user's).
pub fn locate(exc: &PyException, eval_frames: bool) -> Option<(Place, u32)> {
    if matches!(
        exc.type_name.as_str(),
        "SyntaxError" | "IndentationError" | "TabError"
    ) {
        // "invalid syntax (<eval-3>, line 2)"
        if let Some((_, tail)) = exc.message.rsplit_once(" (") {
            if let Some((file, line)) = tail
                .strip_suffix(')')
                .and_then(|t| t.rsplit_once(", line "))
            {
                if let (Some(place), Ok(line)) = (place_of(file, eval_frames), line.parse()) {
                    return Some((place, line));
                }
            }
        }
    }
    exc.frames
        .iter()
        .rev()
        .find_map(|f| place_of(&f.file, eval_frames).map(|p| (p, f.line)))
}

#[cfg(test)]
mod tests {
    use push_protocol::PyFrame;

    use super::*;

    fn exc(type_name: &str, message: &str, frames: &[(&str, u32)]) -> PyException {
        PyException {
            type_name: type_name.into(),
            message: message.into(),
            frames: frames
                .iter()
                .map(|(file, line)| PyFrame {
                    file: file.to_string(),
                    line: *line,
                    function: "f".into(),
                    source: String::new(),
                })
                .collect(),
            formatted: String::new(),
        }
    }

    #[test]
    fn app_paths() {
        assert_eq!(app_path("main@v12/pkg/mod.py"), Some("pkg/mod.py"));
        assert_eq!(app_path("my@app@v3/x.py"), Some("x.py"));
        assert_eq!(app_path("main@vx/x.py"), None);
        assert_eq!(app_path("/usr/lib/python3.11/json/__init__.py"), None);
        assert_eq!(app_path("<eval-3>"), None);
    }

    #[test]
    fn innermost_known_frame_wins() {
        let e = exc(
            "ZeroDivisionError",
            "division by zero",
            &[
                ("<eval-3>", 2),
                ("main@v1/lib/calc.py", 7),
                ("/usr/lib/python3.11/x.py", 9),
            ],
        );
        assert_eq!(
            locate(&e, true),
            Some((Place::AppFile("lib/calc.py".into()), 7))
        );
        let e = exc("NameError", "name 'y' is not defined", &[("<eval-3>", 4)]);
        assert_eq!(locate(&e, true), Some((Place::Evaluated, 4)));
        assert_eq!(locate(&e, false), None);
    }

    #[test]
    fn syntax_errors_are_located_from_the_message() {
        let e = exc("SyntaxError", "invalid syntax (<eval-9>, line 3)", &[]);
        assert_eq!(locate(&e, true), Some((Place::Evaluated, 3)));
        let e = exc(
            "IndentationError",
            "unexpected indent (main@v2/app.py, line 14)",
            &[("<eval-9>", 20)],
        );
        assert_eq!(
            locate(&e, false),
            Some((Place::AppFile("app.py".into()), 14))
        );
    }
}
