//! The dashboard's own state and what keys do to it: the focused [`Pane`], the selection and
//! filter of each pane, and [`Ui::on_key`], which changes them and returns the [`Action`] the
//! terminal loop should take. No drawing and no IO here.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::collect::{NodeRow, Snapshot};
use super::columns;

/// The four panes, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Nodes,
    Queues,
    Daemons,
    Deploys,
}

impl Pane {
    pub const ALL: [Pane; 4] = [Pane::Nodes, Pane::Queues, Pane::Daemons, Pane::Deploys];

    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Nodes => "Nodes",
            Pane::Queues => "Queues",
            Pane::Daemons => "Daemons",
            Pane::Deploys => "Deploys + audit",
        }
    }
}

/// What the caller should do after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Refresh,
    /// Open a REPL on this node (id, address).
    Repl(u64, String),
}

/// The dashboard's own state: focused pane, selection and filter per pane.
#[derive(Clone, Debug)]
pub struct Ui {
    pub pane: Pane,
    selected: [usize; 4],
    filter: [String; 4],
    /// Typing a filter after `/`.
    pub typing: bool,
    /// A one-off note for the bottom line (e.g. how the REPL ended).
    pub note: Option<String>,
}

impl Default for Ui {
    fn default() -> Ui {
        Ui {
            pane: Pane::Nodes,
            selected: [0; 4],
            filter: Default::default(),
            typing: false,
            note: None,
        }
    }
}

impl Ui {
    /// The focused pane's filter.
    pub fn filter(&self) -> &str {
        &self.filter[self.pane.index()]
    }

    /// Whether the focused pane's filter keeps a row with these cells.
    pub fn keeps(&self, cells: &[String]) -> bool {
        matches(cells, self.filter())
    }

    /// The focused pane's selected row, clamped to the rows the filter keeps.
    pub fn selected(&self, rows: usize) -> usize {
        self.selected[self.pane.index()].min(rows.saturating_sub(1))
    }

    /// Applies a key; `snap` is what is on screen (for Enter on a node and for clamping).
    pub fn on_key(&mut self, key: KeyEvent, snap: Option<&Snapshot>) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        let i = self.pane.index();
        if self.typing {
            match key.code {
                KeyCode::Esc => {
                    self.filter[i].clear();
                    self.typing = false;
                }
                KeyCode::Enter => self.typing = false,
                KeyCode::Backspace => {
                    self.filter[i].pop();
                }
                KeyCode::Char(c) => {
                    self.filter[i].push(c);
                    self.selected[i] = 0;
                }
                _ => {}
            }
            return Action::None;
        }
        self.note = None;
        let rows = snap.map_or(0, |s| self.rows(s));
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('r') => return Action::Refresh,
            KeyCode::Tab => self.pane = Pane::ALL[(i + 1) % 4],
            KeyCode::BackTab => self.pane = Pane::ALL[(i + 3) % 4],
            KeyCode::Char(c @ '1'..='4') => self.pane = Pane::ALL[c as usize - '1' as usize],
            KeyCode::Char('/') => self.typing = true,
            KeyCode::Esc => self.filter[i].clear(),
            KeyCode::Up => self.selected[i] = self.selected(rows).saturating_sub(1),
            KeyCode::Down => {
                self.selected[i] = (self.selected(rows) + 1).min(rows.saturating_sub(1))
            }
            KeyCode::Enter if self.pane == Pane::Nodes => {
                if let Some(node) = snap.and_then(|s| self.selected_node(s)) {
                    return Action::Repl(node.id, node.addr.clone());
                }
            }
            _ => {}
        }
        Action::None
    }

    /// The node under the cursor in the nodes pane.
    pub fn selected_node<'a>(&self, snap: &'a Snapshot) -> Option<&'a NodeRow> {
        let filter = &self.filter[Pane::Nodes.index()];
        let nodes: Vec<&NodeRow> = snap
            .nodes
            .iter()
            .filter(|n| matches(&columns::node_cells(n), filter))
            .collect();
        let sel = self.selected[Pane::Nodes.index()].min(nodes.len().saturating_sub(1));
        nodes.get(sel).copied()
    }

    /// How many rows of the focused pane its filter keeps (the ones selection moves over).
    fn rows(&self, snap: &Snapshot) -> usize {
        let all: Vec<Vec<String>> = match self.pane {
            Pane::Nodes => snap.nodes.iter().map(columns::node_cells).collect(),
            Pane::Queues => snap
                .queues
                .as_ref()
                .map(|q| q.iter().map(columns::queue_cells).collect())
                .unwrap_or_default(),
            Pane::Daemons => snap
                .daemons
                .as_ref()
                .map(|d| d.iter().map(columns::daemon_cells).collect())
                .unwrap_or_default(),
            Pane::Deploys => columns::version_rows(snap),
        };
        all.iter().filter(|r| self.keeps(r)).count()
    }
}

/// Whether any cell contains `filter` (case-insensitive); an empty filter keeps everything.
fn matches(cells: &[String], filter: &str) -> bool {
    if filter.is_empty() {
        return true;
    }
    let f = filter.to_lowercase();
    cells.iter().any(|c| c.to_lowercase().contains(&f))
}
