//! Tests of the dashboard without a terminal: keys on [`Ui`], [`render`] on ratatui's
//! `TestBackend` (text and colours of the cells), and the `--once` plain text, all from one
//! made-up three-node snapshot.

use std::time::Duration;

use push_protocol::{DaemonRow, Member, NodeStatus, QueueStat, VersionInfo};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;

use super::collect::{AppVersions, NodeRow, QueueRow, Snapshot};
use super::columns;
use super::draw::render;
use super::plain::plain;
use super::ui::{Action, Ui};
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
        python_version: "3.11.7".into(),
        fd_limit: 1024,
        fds_open: 10,
        format_version: 2,
        min_format_version: 1,
        workers: vec![push_protocol::WorkerRow {
            slot: 1,
            pid: 4000 + id as u32,
            up: true,
            busy: 1,
            rss_bytes: 30 << 20,
            cpu_ms: 2500,
            restarts: 2,
            uptime_ms: 1000,
            last_exit: Some("was killed by signal 11 (SIGSEGV)".into()),
            sessions: vec![1],
            tasks: true,
            pool: None,
        }],
    }
}

fn snapshot() -> Snapshot {
    let node = |id: u64, status: Result<NodeStatus, String>| NodeRow {
        id,
        addr: format!("127.0.0.1:700{id}"),
        status,
        lag: Some(1),
        cpu_percent: Some(12.5),
        worker_cpu: vec![Some(37.5)],
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
        "PYTHON WORKERS",
        "w1*",
        "4001",
        "CPU%",
        "37.5",
        "was killed by signal 11 (SIGSEGV)",
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

#[test]
fn every_row_has_one_cell_per_column() {
    let snap = snapshot();
    let down = &snap.nodes[2];
    assert!(down.status.is_err());
    for cells in snap.nodes.iter().map(columns::node_cells) {
        assert_eq!(cells.len(), columns::NODES.len(), "{cells:?}");
    }
    for q in snap.queues.as_ref().expect("queues") {
        assert_eq!(columns::queue_cells(q).len(), columns::QUEUES.len());
    }
    for d in snap.daemons.as_ref().expect("daemons") {
        assert_eq!(columns::daemon_cells(d).len(), columns::DAEMONS.len());
    }
    let versions = columns::version_rows(&snap);
    assert_eq!(versions.len(), 2);
    for cells in versions {
        assert_eq!(cells.len(), columns::VERSIONS.len(), "{cells:?}");
    }
    let entry = push_protocol::AuditEntry {
        seq: 7,
        time_ms: 1_700_000_000_000,
        node: 1,
        who: "ada".into(),
        action: "deploy".into(),
        app: Some("main".into()),
        detail: "v2\nmore".into(),
    };
    assert_eq!(columns::audit_cells(&entry).len(), columns::AUDIT.len());
}

#[test]
fn screen_and_plain_text_share_the_headers() {
    let snap = snapshot();
    let text = plain(&snap);
    let (screen, _) = draw(Some(&snap), &Ui::default());
    let heads: Vec<&str> = columns::NODES.iter().map(|c| c.head).collect();
    let line = text
        .lines()
        .find(|l| l.starts_with("ID"))
        .expect("nodes header");
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), heads);
    for head in ["ID", "ADDRESS", "ROLE", "SERVING"] {
        assert!(screen.contains(head), "{head} missing:\n{screen}");
    }
}

/// A worker's CPU% comes from two samples of the same process; a restarted worker (new pid)
/// or a worker that is down starts afresh.
#[test]
fn worker_cpu_is_a_percent_between_samples_of_one_process() {
    let mut collector = super::collect::Collector::new(Vec::new(), String::new());
    let start = std::time::Instant::now();
    let mut s = status(1, "leader");
    assert_eq!(collector.worker_cpu(&s, start), vec![None]);
    s.workers[0].cpu_ms += 500;
    let later = start + std::time::Duration::from_secs(2);
    let cpu = collector.worker_cpu(&s, later);
    assert!(
        matches!(cpu[..], [Some(c)] if (c - 25.0).abs() < 1e-9),
        "{cpu:?}"
    );
    s.workers[0].pid += 1;
    assert_eq!(collector.worker_cpu(&s, later), vec![None]);
    s.workers[0].up = false;
    assert_eq!(collector.worker_cpu(&s, later), vec![None]);
}
