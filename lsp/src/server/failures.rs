//! Live failures as diagnostics: the cluster's kept failures (`push errors`) of the app are
//! shown as errors on the line of the innermost app frame, in the app's files open in the
//! editor. Refreshed every few seconds while documents are open, when one is opened, and when
//! `push.errors` runs; published only when a file's set changed, so an expired or vanished
//! failure clears its diagnostic.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use push_protocol::debug::{DebugAction, DebugReply, FailureRow};
use push_protocol::{Op, Reply};
use tokio::sync::Notify;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::Client;

use super::{all_diagnostics, lock, Doc, FileDiagnostics};
use crate::error::LspError;
use crate::eval::app_path;
use crate::link::{Link, APP, REQUEST_TIMEOUT};
use crate::paths::{self, file_path};
use crate::text::LineIndex;

/// How often the failures are asked for while documents are open.
const PERIOD: Duration = Duration::from_secs(3);
/// Failures opened per refresh to find their innermost app frame (each is opened once).
const MAX_OPENS: usize = 16;

/// Where a failure points in the app: its path under the app root and 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPlace {
    pub path: String,
    pub line: u32,
}

/// `"main@v3/pkg/m.py:12"` → `pkg/m.py`, 12; None for a file outside the app.
pub fn place_in_app(place: &str) -> Option<AppPlace> {
    let (file, line) = place.rsplit_once(':')?;
    Some(AppPlace {
        path: app_path(file)?.to_string(),
        line: line.parse().ok()?,
    })
}

/// One diagnostic per (file, line, error, app@version), from failures newest first (a route
/// that fails for every request is one error, not one per request): the message names the
/// newest one's origin, how many failures it stands for and the newest one's id (its `code`).
pub fn by_file(
    failures: &[(FailureRow, AppPlace)],
) -> BTreeMap<String, Vec<(u32, String, String)>> {
    let mut groups: Vec<(&FailureRow, &AppPlace, usize)> = Vec::new();
    for (row, place) in failures {
        let same = |(r, p, _): &&mut (&FailureRow, &AppPlace, usize)| {
            p == &place && r.error == row.error && r.version == row.version
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.2 += 1,
            None => groups.push((row, place, 1)),
        }
    }
    let mut files: BTreeMap<String, Vec<(u32, String, String)>> = BTreeMap::new();
    for (row, place, count) in groups {
        let version = row
            .version
            .map_or_else(|| "?".to_string(), |v| v.to_string());
        let which = match count {
            1 => format!("failure {}", row.id),
            n => format!("{n} times, newest failure {}", row.id),
        };
        let message = format!(
            "{} ({}@v{version}, {}, {which})",
            row.error, row.app, row.origin
        );
        files
            .entry(place.path.clone())
            .or_default()
            .push((place.line, message, row.id.clone()));
    }
    files
}

/// The failure diagnostics of the open documents, shared with the [`super::Server`].
pub struct Watch {
    client: Client,
    link: Arc<Link>,
    docs: Arc<Mutex<HashMap<Uri, Doc>>>,
    diagnostics: Arc<Mutex<HashMap<Uri, FileDiagnostics>>>,
    root: Mutex<Option<PathBuf>>,
    /// Failure id → its innermost app frame (None: no frame in the app), found once.
    places: Mutex<HashMap<String, Option<AppPlace>>>,
    /// One refresh at a time.
    running: tokio::sync::Mutex<()>,
    wake: Notify,
}

impl Watch {
    pub(super) fn new(
        client: Client,
        link: Arc<Link>,
        docs: Arc<Mutex<HashMap<Uri, Doc>>>,
        diagnostics: Arc<Mutex<HashMap<Uri, FileDiagnostics>>>,
    ) -> Watch {
        Watch {
            client,
            link,
            docs,
            diagnostics,
            root: Mutex::new(None),
            places: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }

    /// Starts refreshing (every [`PERIOD`] while the app's files are open, and on
    /// [`Watch::nudge`]) with `root` as the workspace; stops once the server is gone.
    pub(super) fn start(self: &Arc<Self>, root: Option<PathBuf>) {
        *lock(&self.root) = root;
        let watch = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(w) = watch.upgrade() else { return };
                if !w.open_app_files().is_empty() {
                    if let Err(e) = w.refresh(None).await {
                        tracing::debug!("live failures not refreshed: {e}");
                    }
                }
                let sleep = tokio::time::sleep(PERIOD);
                let woken = async {
                    w.wake.notified().await;
                };
                tokio::select! { _ = sleep => {}, _ = woken => {} }
            }
        });
    }

    /// Refresh soon (a document was opened).
    pub(super) fn nudge(&self) {
        self.wake.notify_one();
    }

    /// The open documents that are files of the app, with their paths under the app root.
    fn open_app_files(&self) -> Vec<(Uri, String)> {
        let root = lock(&self.root).clone();
        let uris: Vec<Uri> = lock(&self.docs).keys().cloned().collect();
        uris.into_iter()
            .filter_map(|uri| {
                let path = file_path(&uri)?;
                let app = paths::app_root(&path, root.as_deref());
                if !app.join(paths::MANIFEST).is_file() {
                    return None;
                }
                let rel = path.strip_prefix(&app).ok()?;
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                Some((uri, rel.join("/")))
            })
            .collect()
    }

    /// Asks for the failures (or uses `rows`, just listed by `push.errors`) and publishes
    /// each open app file's failure diagnostics where they changed.
    pub(super) async fn refresh(&self, rows: Option<Vec<FailureRow>>) -> Result<(), LspError> {
        let _one = self.running.lock().await;
        let rows = match rows {
            Some(rows) => rows,
            None => match call(&self.link, DebugAction::Errors).await? {
                DebugReply::Errors { rows, .. } => rows,
                other => return Err(LspError::Unexpected(format!("{other:?}"))),
            },
        };
        let rows: Vec<FailureRow> = rows.into_iter().filter(|r| r.app == APP).collect();
        let placed = self.places_of(&rows).await;
        let files = by_file(&placed);
        let mut changed = Vec::new();
        for (uri, rel) in self.open_app_files() {
            let text = lock(&self.docs).get(&uri).map(|d| d.text.clone());
            let Some(text) = text else { continue };
            let idx = LineIndex::new(&text);
            let want: Vec<Diagnostic> = files
                .get(&rel)
                .map(|found| {
                    found
                        .iter()
                        .map(|(line, message, id)| {
                            let line0 = line.saturating_sub(1);
                            let end = idx.lines_range(line0 as usize, line0 as usize).end;
                            Diagnostic {
                                range: Range::new(
                                    Position::new(line0, 0),
                                    Position::new(line0, end.character.max(1)),
                                ),
                                severity: Some(DiagnosticSeverity::ERROR),
                                code: Some(NumberOrString::String(id.clone())),
                                source: Some("push".into()),
                                message: message.clone(),
                                ..Default::default()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut diags = lock(&self.diagnostics);
            let entry = diags.entry(uri.clone()).or_default();
            if entry.failures != want {
                entry.failures = want;
                changed.push((uri, all_diagnostics(entry)));
            }
        }
        for (uri, all) in changed {
            self.client.publish_diagnostics(uri, all, None).await;
        }
        Ok(())
    }

    /// Each failure's innermost app frame: its listed place when that is in the app, else
    /// found by opening it (once per id; at most [`MAX_OPENS`] new ones per refresh).
    async fn places_of(&self, rows: &[FailureRow]) -> Vec<(FailureRow, AppPlace)> {
        {
            let mut places = lock(&self.places);
            places.retain(|id, _| rows.iter().any(|r| &r.id == id));
        }
        let mut opens = 0;
        let mut placed = Vec::new();
        for row in rows {
            let known = lock(&self.places).get(&row.id).cloned();
            let place = match known {
                Some(place) => place,
                None => {
                    let place = match place_in_app(&row.place) {
                        Some(p) => Some(p),
                        None if opens < MAX_OPENS => {
                            opens += 1;
                            match self.innermost_app_frame(&row.id).await {
                                Ok(p) => p,
                                Err(_) => continue, // try again next time
                            }
                        }
                        None => continue,
                    };
                    lock(&self.places).insert(row.id.clone(), place.clone());
                    place
                }
            };
            if let Some(place) = place {
                placed.push((row.clone(), place));
            }
        }
        placed
    }

    async fn innermost_app_frame(&self, id: &str) -> Result<Option<AppPlace>, LspError> {
        match call(&self.link, DebugAction::Open { id: id.into() }).await? {
            DebugReply::Opened(view) => Ok(view.frames.iter().find_map(|f| {
                Some(AppPlace {
                    path: app_path(&f.file)?.to_string(),
                    line: f.line,
                })
            })),
            other => Err(LspError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// Asks the cluster (through the connected node) one post-mortem question.
pub(super) async fn call(link: &Link, action: DebugAction) -> Result<DebugReply, LspError> {
    let op = Op::Debug {
        action,
        here: false,
        scope: vec![],
    };
    match link.call(op, REQUEST_TIMEOUT).await? {
        Reply::Debug(reply) => Ok(reply),
        other => Err(LspError::Unexpected(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, error: &str, version: u64, place: &str) -> FailureRow {
        FailureRow {
            id: id.into(),
            node: 1,
            worker: 1,
            app: "main".into(),
            version: Some(version),
            origin: "route GET /sq/5".into(),
            at_ms: 0,
            error: error.into(),
            place: place.into(),
        }
    }

    #[test]
    fn places_in_the_app_only() {
        assert_eq!(
            place_in_app("main@v3/pkg/m.py:12"),
            Some(AppPlace {
                path: "pkg/m.py".into(),
                line: 12
            })
        );
        assert_eq!(
            place_in_app("/usr/lib/python3.11/json/decoder.py:355"),
            None
        );
        assert_eq!(place_in_app("main@v3/app.py"), None);
        assert_eq!(place_in_app(""), None);
    }

    #[test]
    fn repeated_failures_are_one_diagnostic_naming_the_newest() {
        let at = |line| AppPlace {
            path: "app.py".into(),
            line,
        };
        let failures = vec![
            (
                row("1.1.1.3", "ZeroDivisionError: division by zero", 2, ""),
                at(5),
            ),
            (
                FailureRow {
                    origin: "route GET /sq/6".into(),
                    ..row("1.1.1.2", "ZeroDivisionError: division by zero", 2, "")
                },
                at(5),
            ),
            (
                row("1.1.1.1", "ZeroDivisionError: division by zero", 1, ""),
                at(5),
            ),
        ];
        let files = by_file(&failures);
        let app = &files["app.py"];
        assert_eq!(app.len(), 2, "{app:?}");
        assert_eq!(app[0].0, 5);
        assert_eq!(app[0].2, "1.1.1.3");
        assert_eq!(
            app[0].1,
            "ZeroDivisionError: division by zero (main@v2, route GET /sq/5, 2 times, newest failure 1.1.1.3)"
        );
        assert_eq!(
            app[1].1,
            "ZeroDivisionError: division by zero (main@v1, route GET /sq/5, failure 1.1.1.1)"
        );
    }
}
