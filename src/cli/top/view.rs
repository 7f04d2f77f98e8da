//! What `push top` draws and how keys change it: the UI state ([`Ui`]), key handling that
//! returns an [`Action`], and [`render`], a pure function of a [`Snapshot`] and the UI state
//! (tested on ratatui's `TestBackend`). No IO here.

use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState, Tabs};
use ratatui::Frame;

use super::collect::{NodeRow, Snapshot};
use push_repl::views::format_time;

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

    fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    fn title(self) -> &'static str {
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

    /// The focused pane's selected row, clamped to the rows the filter keeps.
    fn selected(&self, rows: usize) -> usize {
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
        let rows = snap.map_or(0, |s| self.rows(s).len());
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
            .filter(|n| matches(&node_cells(n), filter))
            .collect();
        let sel = self.selected[Pane::Nodes.index()].min(nodes.len().saturating_sub(1));
        nodes.get(sel).copied()
    }

    /// The focused pane's rows after its filter (the ones selection moves over).
    fn rows(&self, snap: &Snapshot) -> Vec<Vec<String>> {
        let filter = self.filter();
        let all: Vec<Vec<String>> = match self.pane {
            Pane::Nodes => snap.nodes.iter().map(node_cells).collect(),
            Pane::Queues => snap
                .queues
                .as_ref()
                .map(|q| q.iter().map(queue_cells).collect())
                .unwrap_or_default(),
            Pane::Daemons => snap
                .daemons
                .as_ref()
                .map(|d| d.iter().map(daemon_cells).collect())
                .unwrap_or_default(),
            Pane::Deploys => version_rows(snap),
        };
        all.into_iter().filter(|r| matches(r, filter)).collect()
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

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n == 0 {
        "-".into()
    } else if (n as f64) < 1024.0 * MIB {
        format!("{:.0} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} GiB", n as f64 / MIB / 1024.0)
    }
}

fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

const NODE_HEADER: [&str; 11] = [
    "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "RSS", "CPU%", "SERVING", "UPTIME",
];

fn node_cells(n: &NodeRow) -> Vec<String> {
    match &n.status {
        Ok(s) => {
            let serving = if s.serving.is_empty() {
                "-".to_string()
            } else {
                s.serving
                    .iter()
                    .map(|(app, v)| format!("{app}@v{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                s.id.to_string(),
                n.addr.clone(),
                s.role.clone(),
                s.term.to_string(),
                opt(s.committed_index),
                opt(s.applied_index),
                opt(n.lag),
                bytes(s.rss_bytes),
                n.cpu_percent.map_or("-".into(), |c| format!("{c:.1}")),
                serving,
                uptime(s.uptime_ms),
            ]
        }
        Err(e) => vec![
            n.id.to_string(),
            n.addr.clone(),
            "DOWN".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            // The address is in its own column already, and the hint is for other commands.
            e.strip_prefix(&format!("cannot connect to {}: ", n.addr))
                .and_then(|rest| rest.split("; ").next())
                .unwrap_or(e)
                .to_string(),
            String::new(),
        ],
    }
}

fn queue_cells(q: &super::collect::QueueRow) -> Vec<String> {
    vec![
        q.stat.name.clone(),
        q.stat.ready.to_string(),
        q.stat.leased.to_string(),
        q.stat.puts.to_string(),
        q.stat.acks.to_string(),
        format!("{:.1}", q.put_rate),
        format!("{:.1}", q.ack_rate),
    ]
}

fn daemon_cells(d: &push_protocol::DaemonRow) -> Vec<String> {
    vec![
        d.app.clone(),
        d.unit.clone(),
        d.kind.clone(),
        d.node.map_or("unplaced".into(), |n| n.to_string()),
        d.state.clone(),
        d.restarts.to_string(),
        d.error
            .as_deref()
            .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .to_string(),
    ]
}

fn version_rows(snap: &Snapshot) -> Vec<Vec<String>> {
    let Ok(apps) = &snap.versions else {
        return Vec::new();
    };
    apps.iter()
        .flat_map(|a| {
            a.versions.iter().map(move |v| {
                let head = if Some(v.number) == a.head { "*" } else { " " };
                vec![
                    a.app.clone(),
                    format!("{head} v{}", v.number),
                    format_time(v.time_ms),
                    v.author.clone(),
                    v.files.to_string(),
                    v.message.clone(),
                ]
            })
        })
        .collect()
}

fn audit_cells(e: &push_protocol::AuditEntry) -> Vec<String> {
    vec![
        e.seq.to_string(),
        format_time(e.time_ms),
        e.node.to_string(),
        e.who.clone(),
        e.action.clone(),
        e.app.clone().unwrap_or_default(),
        e.detail.lines().next().unwrap_or("").to_string(),
    ]
}

fn header(cells: &[&str]) -> Row<'static> {
    Row::new(cells.iter().map(|c| Cell::from(c.to_string())))
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED))
}

fn boxed(title: String) -> Block<'static> {
    Block::default().borders(Borders::ALL).title(title)
}

/// Draws the whole dashboard. `snap` is None before the first refresh; `age` is how long ago
/// it was taken.
pub fn render(frame: &mut Frame, snap: Option<&Snapshot>, ui: &Ui, age: Option<Duration>) {
    let [top, tabs, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(status_line(snap, age)), top);
    let titles = Pane::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{} {}", i + 1, p.title()));
    frame.render_widget(
        Tabs::new(titles)
            .select(ui.pane.index())
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        tabs,
    );
    match snap {
        None => frame.render_widget(
            Paragraph::new("connecting…").block(boxed(ui.pane.title().into())),
            body,
        ),
        Some(snap) => {
            if let Some(error) = &snap.error {
                let [err, rest] =
                    Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(body);
                frame.render_widget(
                    Paragraph::new(error.as_str()).style(Style::default().fg(Color::Red)),
                    err,
                );
                draw_pane(frame, snap, ui, rest);
            } else {
                draw_pane(frame, snap, ui, body);
            }
        }
    }
    frame.render_widget(Paragraph::new(bottom_line(ui)), bottom);
}

fn status_line(snap: Option<&Snapshot>, age: Option<Duration>) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " push top ",
        Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
    )];
    if let Some(s) = snap {
        let up = s.nodes.iter().filter(|n| n.status.is_ok()).count();
        let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
        spans.push(Span::raw(format!(
            "  leader {leader}  term {}  nodes up {up}/{}",
            s.term,
            s.nodes.len()
        )));
    }
    let age = age.map_or("never".to_string(), |a| {
        format!("{:.1}s ago", a.as_secs_f64())
    });
    spans.push(Span::raw(format!("  refreshed {age}")));
    Line::from(spans)
}

fn bottom_line(ui: &Ui) -> Line<'static> {
    if ui.typing {
        return Line::from(vec![
            Span::styled("filter: ", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{}▏", ui.filter())),
            Span::raw("   Enter keep  Esc clear"),
        ]);
    }
    let mut spans = Vec::new();
    if !ui.filter().is_empty() {
        spans.push(Span::styled(
            format!("[filter: {}] ", ui.filter()),
            Style::default().fg(Color::Yellow),
        ));
    }
    if let Some(note) = &ui.note {
        spans.push(Span::styled(
            format!("{note}  "),
            Style::default().fg(Color::Yellow),
        ));
    }
    spans.push(Span::raw(
        "Tab/1-4 pane  ↑↓ select  / filter  Esc clear  r refresh  Enter repl on node  q quit",
    ));
    Line::from(spans)
}

fn table_state(ui: &Ui, rows: usize) -> TableState {
    TableState::default().with_selected((rows > 0).then(|| ui.selected(rows)))
}

fn highlight() -> Style {
    Style::default()
        .bg(Color::DarkGray)
        .add_modifier(Modifier::BOLD)
}

fn draw_pane(frame: &mut Frame, snap: &Snapshot, ui: &Ui, area: Rect) {
    match ui.pane {
        Pane::Nodes => draw_nodes(frame, snap, ui, area),
        Pane::Queues => draw_queues(frame, snap, ui, area),
        Pane::Daemons => draw_daemons(frame, snap, ui, area),
        Pane::Deploys => draw_deploys(frame, snap, ui, area),
    }
}

/// Node columns: width and priority (0 is kept longest); narrow terminals drop the highest
/// priorities first so id, role and address stay readable at 80 columns.
const NODE_COLUMNS: [(u16, u8); 11] = [
    (4, 0),  // ID
    (21, 1), // ADDRESS
    (9, 0),  // ROLE
    (5, 5),  // TERM
    (8, 6),  // COMMIT
    (8, 3),  // APPLIED
    (5, 2),  // LAG
    (8, 4),  // RSS
    (6, 3),  // CPU%
    (12, 2), // SERVING (takes what is left)
    (7, 7),  // UPTIME
];

/// Which of `columns` fit in `width` (1 cell between columns, 2 for borders), in order.
fn fit_columns(columns: &[(u16, u8)], width: u16) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..columns.len()).collect();
    let total = |keep: &[usize]| -> u16 { keep.iter().map(|i| columns[*i].0 + 1).sum::<u16>() + 2 };
    while total(&keep) > width && keep.len() > 1 {
        let Some(worst) = keep.iter().copied().max_by_key(|i| (columns[*i].1, *i)) else {
            break;
        };
        keep.retain(|i| *i != worst);
    }
    keep
}

fn draw_nodes(frame: &mut Frame, snap: &Snapshot, ui: &Ui, area: Rect) {
    let keep = fit_columns(&NODE_COLUMNS, area.width);
    let pick = |cells: Vec<String>| -> Vec<String> {
        keep.iter()
            .map(|i| cells.get(*i).cloned().unwrap_or_default())
            .collect()
    };
    let rows: Vec<Row> = snap
        .nodes
        .iter()
        .map(|n| (n, node_cells(n)))
        .filter(|(_, cells)| matches(cells, ui.filter()))
        .map(|(n, cells)| {
            let style = match &n.status {
                Err(_) => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                Ok(s) if s.role == "leader" => Style::default().fg(Color::Green),
                Ok(_) if n.registry_alive == Some(false) => Style::default().fg(Color::Yellow),
                Ok(_) => Style::default(),
            };
            Row::new(pick(cells)).style(style)
        })
        .collect();
    let count = rows.len();
    // SERVING (column 9) also holds a DOWN node's reason: it takes the remaining width.
    let widths: Vec<Constraint> = keep
        .iter()
        .map(|i| match i {
            9 => Constraint::Min(NODE_COLUMNS[*i].0),
            _ => Constraint::Length(NODE_COLUMNS[*i].0),
        })
        .collect();
    let head: Vec<&str> = keep.iter().map(|i| NODE_HEADER[*i]).collect();
    let table = Table::new(rows, widths)
        .header(header(&head))
        .block(boxed(format!("Nodes ({})", snap.nodes.len())))
        .row_highlight_style(highlight());
    frame.render_stateful_widget(table, area, &mut table_state(ui, count));
}

fn draw_queues(frame: &mut Frame, snap: &Snapshot, ui: &Ui, area: Rect) {
    let queues = match &snap.queues {
        Ok(q) => q,
        Err(e) => {
            frame.render_widget(
                Paragraph::new(format!("queues: unavailable — {e}")).block(boxed("Queues".into())),
                area,
            );
            return;
        }
    };
    let kept: Vec<_> = queues
        .iter()
        .filter(|q| matches(&queue_cells(q), ui.filter()))
        .collect();
    let [table_area, spark_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(8)]).areas(area);
    let rows: Vec<Row> = kept.iter().map(|q| Row::new(queue_cells(q))).collect();
    let widths = [
        Constraint::Min(16),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    let title = if queues.is_empty() {
        "Queues (none yet: push.queue(NAME).put(...) creates one)".to_string()
    } else {
        format!("Queues ({})", queues.len())
    };
    let table = Table::new(rows, widths)
        .header(header(&[
            "QUEUE", "READY", "LEASED", "PUTS", "ACKS", "PUT/S", "ACK/S",
        ]))
        .block(boxed(title))
        .row_highlight_style(highlight());
    frame.render_stateful_widget(table, table_area, &mut table_state(ui, kept.len()));
    let Some(q) = kept.get(ui.selected(kept.len())) else {
        return;
    };
    let [puts, acks] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
        .areas(spark_area);
    // The newest samples that fit, right-aligned like `top`'s graphs.
    let fit = |h: &[u64], width: u16| -> Vec<u64> {
        let w = usize::from(width.saturating_sub(2));
        h[h.len().saturating_sub(w)..].to_vec()
    };
    let put_data = fit(&q.put_history, puts.width);
    let ack_data = fit(&q.ack_history, acks.width);
    frame.render_widget(
        Sparkline::default()
            .block(boxed(format!("{} puts/s {:.1}", q.stat.name, q.put_rate)))
            .data(&put_data)
            .style(Style::default().fg(Color::Cyan)),
        puts,
    );
    frame.render_widget(
        Sparkline::default()
            .block(boxed(format!("{} acks/s {:.1}", q.stat.name, q.ack_rate)))
            .data(&ack_data)
            .style(Style::default().fg(Color::Green)),
        acks,
    );
}

fn draw_daemons(frame: &mut Frame, snap: &Snapshot, ui: &Ui, area: Rect) {
    let daemons = match &snap.daemons {
        Ok(d) => d,
        Err(e) => {
            frame.render_widget(
                Paragraph::new(format!("daemons: unavailable — {e}"))
                    .block(boxed("Daemons".into())),
                area,
            );
            return;
        }
    };
    let rows: Vec<Row> = daemons
        .iter()
        .map(|d| (d, daemon_cells(d)))
        .filter(|(_, cells)| matches(cells, ui.filter()))
        .map(|(d, cells)| {
            let style = match d.state.as_str() {
                "crashed" | "backoff" => Style::default().fg(Color::Red),
                "running" => Style::default(),
                _ => Style::default().fg(Color::Yellow),
            };
            Row::new(cells).style(style)
        })
        .collect();
    let count = rows.len();
    let widths = [
        Constraint::Length(12),
        Constraint::Length(20),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Min(20),
    ];
    let title = if daemons.is_empty() {
        "Daemons (none: @push.daemon, @push.every, timeseries handlers)".to_string()
    } else {
        format!("Daemons ({})", daemons.len())
    };
    let table = Table::new(rows, widths)
        .header(header(&[
            "APP",
            "UNIT",
            "KIND",
            "NODE",
            "STATE",
            "RESTARTS",
            "LAST ERROR",
        ]))
        .block(boxed(title))
        .row_highlight_style(highlight());
    frame.render_stateful_widget(table, area, &mut table_state(ui, count));
}

fn draw_deploys(frame: &mut Frame, snap: &Snapshot, ui: &Ui, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    match &snap.versions {
        Ok(_) => {
            let rows: Vec<Row> = version_rows(snap)
                .into_iter()
                .filter(|cells| matches(cells, ui.filter()))
                .map(|cells| {
                    let style = if cells[1].starts_with('*') {
                        Style::default()
                            .fg(Color::Green)
                            .add_modifier(Modifier::BOLD)
                    } else {
                        Style::default()
                    };
                    Row::new(cells).style(style)
                })
                .collect();
            let count = rows.len();
            let widths = [
                Constraint::Length(12),
                Constraint::Length(7),
                Constraint::Length(20),
                Constraint::Length(14),
                Constraint::Length(5),
                Constraint::Min(10),
            ];
            let table = Table::new(rows, widths)
                .header(header(&[
                    "APP", "VERSION", "TIME", "AUTHOR", "FILES", "MESSAGE",
                ]))
                .block(boxed("Versions (* = HEAD)".into()))
                .row_highlight_style(highlight());
            frame.render_stateful_widget(table, top, &mut table_state(ui, count));
        }
        Err(e) => frame.render_widget(
            Paragraph::new(format!("versions: unavailable — {e}")).block(boxed("Versions".into())),
            top,
        ),
    }
    match &snap.audit {
        Ok(entries) => {
            let rows: Vec<Row> = entries
                .iter()
                .map(audit_cells)
                .filter(|cells| matches(cells, ui.filter()))
                .map(Row::new)
                .collect();
            let widths = [
                Constraint::Length(6),
                Constraint::Length(20),
                Constraint::Length(4),
                Constraint::Length(20),
                Constraint::Length(9),
                Constraint::Length(10),
                Constraint::Min(10),
            ];
            let table = Table::new(rows, widths)
                .header(header(&[
                    "SEQ", "TIME", "NODE", "WHO", "ACTION", "APP", "DETAIL",
                ]))
                .block(boxed("Audit (newest first)".into()));
            frame.render_widget(table, bottom);
        }
        Err(e) => frame.render_widget(
            Paragraph::new(format!("audit: unavailable — {e}"))
                .style(Style::default().fg(Color::Yellow))
                .block(boxed("Audit".into())),
            bottom,
        ),
    }
}

/// The snapshot as plain text, for `push top --once` (scripts, logs, no terminal needed).
pub fn plain(snap: &Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let leader = snap.leader.map_or("none".to_string(), |l| l.to_string());
    let _ = writeln!(out, "leader {leader}  term {}", snap.term);
    if let Some(e) = &snap.error {
        let _ = writeln!(out, "{e}");
    }
    let table = |out: &mut String, title: &str, head: &[&str], rows: Vec<Vec<String>>| {
        let _ = writeln!(out, "\n{title}");
        let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| -> String {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let _ = writeln!(
            out,
            "{}",
            line(head.iter().map(|h| h.to_string()).collect())
        );
        for r in rows {
            let _ = writeln!(out, "{}", line(r));
        }
    };
    table(
        &mut out,
        "NODES",
        &NODE_HEADER,
        snap.nodes.iter().map(node_cells).collect(),
    );
    match &snap.queues {
        Ok(q) => table(
            &mut out,
            "QUEUES",
            &["QUEUE", "READY", "LEASED", "PUTS", "ACKS", "PUT/S", "ACK/S"],
            q.iter().map(queue_cells).collect(),
        ),
        Err(e) => {
            let _ = writeln!(out, "\nqueues: unavailable — {e}");
        }
    }
    match &snap.daemons {
        Ok(d) => table(
            &mut out,
            "DAEMONS",
            &[
                "APP",
                "UNIT",
                "KIND",
                "NODE",
                "STATE",
                "RESTARTS",
                "LAST ERROR",
            ],
            d.iter().map(daemon_cells).collect(),
        ),
        Err(e) => {
            let _ = writeln!(out, "\ndaemons: unavailable — {e}");
        }
    }
    match &snap.versions {
        Ok(_) => table(
            &mut out,
            "VERSIONS",
            &["APP", "VERSION", "TIME", "AUTHOR", "FILES", "MESSAGE"],
            version_rows(snap),
        ),
        Err(e) => {
            let _ = writeln!(out, "\nversions: unavailable — {e}");
        }
    }
    match &snap.audit {
        Ok(a) => table(
            &mut out,
            "AUDIT",
            &["SEQ", "TIME", "NODE", "WHO", "ACTION", "APP", "DETAIL"],
            a.iter().map(audit_cells).collect(),
        ),
        Err(e) => {
            let _ = writeln!(out, "\naudit: unavailable — {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::collect::{AppVersions, QueueRow};
    use super::*;
    use push_protocol::{DaemonRow, Member, NodeStatus, QueueStat, VersionInfo};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn status(id: u64, role: &str) -> NodeStatus {
        NodeStatus {
            id,
            addr: format!("127.0.0.1:700{id}"),
            role: role.into(),
            term: 4,
            leader: Some(1),
            last_log_index: Some(40),
            committed_index: Some(40),
            applied_index: Some(39),
            snapshot_index: None,
            members: (1..=3)
                .map(|i| Member {
                    id: i,
                    addr: format!("127.0.0.1:700{i}"),
                    voter: true,
                })
                .collect(),
            matched: Vec::new(),
            heads: vec![("main".into(), 2)],
            push_version: "0.1.0".into(),
            uptime_ms: 125_000,
            pid: 100 + id as u32,
            http: None,
            serving: vec![("main".into(), 2)],
            load_errors: Vec::new(),
            rss_bytes: 64 * 1024 * 1024,
            cpu_ms: 1000,
            fd_limit: 1024,
            fds_open: 40,
        }
    }

    fn snapshot() -> Snapshot {
        let node = |id: u64, status: Result<NodeStatus, String>| NodeRow {
            id,
            addr: format!("127.0.0.1:700{id}"),
            status,
            lag: Some(1),
            cpu_percent: Some(12.5),
            registry_alive: Some(true),
        };
        let version = |number: u64, message: &str| VersionInfo {
            number,
            parent: number.checked_sub(1).filter(|p| *p > 0),
            message: message.into(),
            author: "ada".into(),
            time_ms: 1_700_000_000_000,
            files: 3,
            tree_hash: "abc".into(),
        };
        Snapshot {
            nodes: vec![
                node(1, Ok(status(1, "leader"))),
                node(2, Ok(status(2, "follower"))),
                node(3, Err("connection refused".into())),
            ],
            leader: Some(1),
            term: 4,
            queues: Ok(vec![QueueRow {
                stat: QueueStat {
                    name: "jobs".into(),
                    ready: 7,
                    leased: 2,
                    puts: 120,
                    acks: 111,
                },
                put_rate: 10.0,
                ack_rate: 9.5,
                put_history: vec![1, 5, 10],
                ack_history: vec![0, 4, 9],
            }]),
            daemons: Ok(vec![DaemonRow {
                app: "main".into(),
                unit: "worker".into(),
                kind: "daemon".into(),
                node: Some(2),
                state: "crashed".into(),
                restarts: 3,
                runs: 4,
                version: Some(2),
                error: Some("Traceback...\nValueError: boom\n".into()),
            }]),
            versions: Ok(vec![AppVersions {
                app: "main".into(),
                head: Some(2),
                versions: vec![version(2, "second"), version(1, "first")],
            }]),
            audit: Err("unknown request (the node is older than this client)".into()),
            error: None,
        }
    }

    fn draw(snap: Option<&Snapshot>, ui: &Ui) -> (String, ratatui::buffer::Buffer) {
        draw_sized(snap, ui, 140, 30)
    }

    fn draw_sized(
        snap: Option<&Snapshot>,
        ui: &Ui,
        width: u16,
        height: u16,
    ) -> (String, ratatui::buffer::Buffer) {
        let mut term = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        term.draw(|f| render(f, snap, ui, Some(Duration::from_millis(300))))
            .expect("draw");
        let buffer = term.backend().buffer().clone();
        let text = (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n");
        (text, buffer)
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    /// The cell where `text` starts on screen.
    fn find(text: &str, needle: &str) -> (u16, u16) {
        for (y, line) in text.lines().enumerate() {
            if let Some(byte) = line.find(needle) {
                return (line[..byte].chars().count() as u16, y as u16);
            }
        }
        panic!("{needle:?} not on screen:\n{text}");
    }

    #[test]
    fn nodes_pane_shows_every_node_and_down_ones_in_red() {
        let snap = snapshot();
        let (text, buffer) = draw(Some(&snap), &Ui::default());
        for needle in [
            "leader 1  term 4  nodes up 2/3",
            "refreshed 0.3s ago",
            "127.0.0.1:7001",
            "leader",
            "follower",
            "64 MiB",
            "12.5",
            "main@v2",
            "2m05s",
            "connection refused",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        let (x, y) = find(&text, "DOWN");
        assert_eq!(buffer[(x, y)].fg, Color::Red, "{text}");
        let (x, y) = find(&text, "127.0.0.1:7001");
        assert_eq!(buffer[(x, y)].fg, Color::Green, "the leader's row is green");
    }

    #[test]
    fn keys_switch_panes_and_filter_rows() {
        let snap = snapshot();
        let mut ui = Ui::default();
        assert_eq!(
            ui.on_key(key(KeyCode::Char('2')), Some(&snap)),
            Action::None
        );
        let (text, _) = draw(Some(&snap), &ui);
        for needle in ["QUEUE", "jobs", "120", "10.0", "9.5", "jobs puts/s 10.0"] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        ui.on_key(key(KeyCode::Tab), Some(&snap));
        let (text, _) = draw(Some(&snap), &ui);
        assert!(
            text.contains("worker") && text.contains("ValueError: boom"),
            "{text}"
        );
        ui.on_key(key(KeyCode::Tab), Some(&snap));
        let (text, _) = draw(Some(&snap), &ui);
        assert!(text.contains("* v2") && text.contains("  v1"), "{text}");
        assert!(
            text.contains("audit: unavailable — unknown request"),
            "{text}"
        );
        // Filter the nodes pane down to the follower, then clear it.
        ui.on_key(key(KeyCode::Char('1')), Some(&snap));
        ui.on_key(key(KeyCode::Char('/')), Some(&snap));
        for c in "FOLL".chars() {
            ui.on_key(key(KeyCode::Char(c)), Some(&snap));
        }
        let (text, _) = draw(Some(&snap), &ui);
        assert!(text.contains("filter: FOLL"), "{text}");
        assert!(text.contains("127.0.0.1:7002"), "{text}");
        assert!(!text.contains("127.0.0.1:7001"), "{text}");
        // Enter keeps the filter; Enter again opens a REPL on the (only) row.
        ui.on_key(key(KeyCode::Enter), Some(&snap));
        assert_eq!(
            ui.on_key(key(KeyCode::Enter), Some(&snap)),
            Action::Repl(2, "127.0.0.1:7002".into())
        );
        ui.on_key(key(KeyCode::Esc), Some(&snap));
        let (text, _) = draw(Some(&snap), &ui);
        assert!(text.contains("127.0.0.1:7001"), "{text}");
        // Down twice selects node 3; Up once node 2.
        ui.on_key(key(KeyCode::Down), Some(&snap));
        ui.on_key(key(KeyCode::Down), Some(&snap));
        ui.on_key(key(KeyCode::Down), Some(&snap));
        assert_eq!(ui.selected_node(&snap).map(|n| n.id), Some(3));
        ui.on_key(key(KeyCode::Up), Some(&snap));
        assert_eq!(ui.selected_node(&snap).map(|n| n.id), Some(2));
        assert_eq!(
            ui.on_key(key(KeyCode::Char('r')), Some(&snap)),
            Action::Refresh
        );
        assert_eq!(
            ui.on_key(key(KeyCode::Char('q')), Some(&snap)),
            Action::Quit
        );
        assert_eq!(
            ui.on_key(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Some(&snap)
            ),
            Action::Quit
        );
    }

    #[test]
    fn an_80_column_terminal_still_shows_ids_roles_and_down() {
        let (text, _) = draw_sized(Some(&snapshot()), &Ui::default(), 80, 24);
        for needle in [
            "leader",
            "follower",
            "DOWN",
            "127.0.0.1:7003",
            "LAG",
            "main@v2",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
    }

    #[test]
    fn before_the_first_refresh_and_with_no_node_it_says_so() {
        let (text, _) = draw(None, &Ui::default());
        assert!(
            text.contains("connecting…") && text.contains("refreshed"),
            "{text}"
        );
        let mut snap = snapshot();
        snap.error = Some("no node answers (127.0.0.1:7001: refused)".into());
        let (text, buffer) = draw(Some(&snap), &Ui::default());
        let (x, y) = find(&text, "no node answers");
        assert_eq!(buffer[(x, y)].fg, Color::Red);
    }

    #[test]
    fn plain_text_snapshot_has_every_section() {
        let text = plain(&snapshot());
        for needle in [
            "leader 1  term 4",
            "NODES",
            "DOWN",
            "QUEUES",
            "jobs",
            "DAEMONS",
            "worker",
            "VERSIONS",
            "* v2",
            "audit: unavailable",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
    }
}
