//! Drawing the dashboard with ratatui: [`render`] is a pure function of a [`Snapshot`], the
//! [`Ui`] state and the snapshot's age (tested on ratatui's `TestBackend`). Which columns a
//! pane has comes from [`super::columns`]; here is only how they look. No IO here.

use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState, Tabs};
use ratatui::Frame;

use super::collect::Snapshot;
use super::columns::{self, Column};
use super::ui::{Pane, Ui};

/// A table with these columns: their headers, and their widths as constraints.
fn table<'a>(rows: Vec<Row<'a>>, columns: &[Column]) -> Table<'a> {
    let widths = columns.iter().map(|c| {
        if c.fill {
            Constraint::Min(c.width)
        } else {
            Constraint::Length(c.width)
        }
    });
    let header = Row::new(columns.iter().map(|c| Cell::from(c.head)))
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    Table::new(rows, widths).header(header)
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

/// The nodes that pass the filter, with the columns that fit (see [`columns::NODES`]): down
/// nodes red, the leader green, a node the registry thinks dead yellow.
fn draw_nodes(frame: &mut Frame, snap: &Snapshot, ui: &Ui, area: Rect) {
    let keep = columns::fit(&columns::NODES, area.width);
    let pick = |cells: Vec<String>| -> Vec<String> {
        keep.iter()
            .map(|i| cells.get(*i).cloned().unwrap_or_default())
            .collect()
    };
    let rows: Vec<Row> = snap
        .nodes
        .iter()
        .map(|n| (n, columns::node_cells(n)))
        .filter(|(_, cells)| ui.keeps(cells))
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
    let workers = columns::worker_rows(snap);
    let [area, below] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(if workers.is_empty() {
            0
        } else {
            (workers.len() as u16 + 3).min(12)
        }),
    ])
    .areas(area);
    let kept: Vec<Column> = keep.iter().map(|i| columns::NODES[*i]).collect();
    let nodes = table(rows, &kept)
        .block(boxed(format!("Nodes ({})", snap.nodes.len())))
        .row_highlight_style(highlight());
    frame.render_stateful_widget(nodes, area, &mut table_state(ui, count));
    if !workers.is_empty() {
        let keep = columns::fit(&columns::WORKERS, below.width);
        let kept: Vec<Column> = keep.iter().map(|i| columns::WORKERS[*i]).collect();
        let rows: Vec<Row> = workers
            .into_iter()
            .map(|cells| {
                let down = cells.get(2).is_some_and(|pid| pid == "down");
                let row = Row::new(
                    keep.iter()
                        .map(|i| cells.get(*i).cloned().unwrap_or_default())
                        .collect::<Vec<_>>(),
                );
                if down {
                    row.style(Style::default().fg(Color::Red))
                } else {
                    row
                }
            })
            .collect();
        let workers = table(rows, &kept).block(boxed("Python workers (* runs the daemons)".into()));
        frame.render_widget(workers, below);
    }
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
        .filter(|q| ui.keeps(&columns::queue_cells(q)))
        .collect();
    let [table_area, spark_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(8)]).areas(area);
    let rows: Vec<Row> = kept
        .iter()
        .map(|q| Row::new(columns::queue_cells(q)))
        .collect();
    let title = if queues.is_empty() {
        "Queues (none yet: push.queue(NAME).put(...) creates one)".to_string()
    } else {
        format!("Queues ({})", queues.len())
    };
    let table = table(rows, &columns::QUEUES)
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
            .block(boxed(format!(
                "{} puts/s {:.1}",
                push_protocol::realm::display(&q.stat.name),
                q.put_rate
            )))
            .data(&put_data)
            .style(Style::default().fg(Color::Cyan)),
        puts,
    );
    frame.render_widget(
        Sparkline::default()
            .block(boxed(format!(
                "{} acks/s {:.1}",
                push_protocol::realm::display(&q.stat.name),
                q.ack_rate
            )))
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
        .map(|d| (d, columns::daemon_cells(d)))
        .filter(|(_, cells)| ui.keeps(cells))
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
    let title = if daemons.is_empty() {
        "Daemons (none: @push.daemon, @push.every, timeseries handlers)".to_string()
    } else {
        format!("Daemons ({})", daemons.len())
    };
    let table = table(rows, &columns::DAEMONS)
        .block(boxed(title))
        .row_highlight_style(highlight());
    frame.render_stateful_widget(table, area, &mut table_state(ui, count));
}

fn draw_deploys(frame: &mut Frame, snap: &Snapshot, ui: &Ui, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    match &snap.versions {
        Ok(_) => {
            let rows: Vec<Row> = columns::version_rows(snap)
                .into_iter()
                .filter(|cells| ui.keeps(cells))
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
            let table = table(rows, &columns::VERSIONS)
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
                .map(columns::audit_cells)
                .filter(|cells| ui.keeps(cells))
                .map(Row::new)
                .collect();
            let table = table(rows, &columns::AUDIT).block(boxed("Audit (newest first)".into()));
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
