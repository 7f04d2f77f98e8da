//! Starts `push node` processes on loopback with free ports and temp data dirs; kills them
//! (and prints their logs if the test failed) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use push_protocol::{Client, NodeStatus, Op, ReadMode, Reply, Value};

use super::proxy::{FaultNet, Mode};

pub use super::cli::{fails, ok, push_bin, with_stdin};

/// A free loopback port for a node to listen on. Taken below the kernel's ephemeral range
/// (32768 and up on Linux) and never handed out twice by this process: a port from the
/// ephemeral range can be taken by some outgoing connection's local end between our check and
/// the node's bind, which once left a test cluster a node short.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start where this process's id points, so concurrent test binaries rarely overlap.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN);
}

/// One node process.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    /// The node's app HTTP address.
    pub http: String,
    pub data: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    /// Stopped with SIGSTOP (see [`Cluster::pause`]).
    paused: bool,
}

/// A cluster of node processes sharing a temp dir and a token.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub token_file: PathBuf,
    pub nodes: Vec<NodeProc>,
    /// Fault proxies on every peer link, when started with [`Cluster::start_partitionable`].
    pub net: Option<FaultNet>,
    /// Open-file limits (soft and hard) to start nodes under, by node id.
    fd_limits: std::collections::HashMap<u64, u64>,
    /// Every node process started, so that their folders in the temporary directory (a
    /// killed node leaves its shared folder of versions' files) go with the cluster.
    started: std::sync::Mutex<Vec<u32>>,
}

impl Cluster {
    /// No nodes yet: a temp dir and a fresh token file.
    fn empty() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("push-it-")
            .tempdir()
            .expect("temp dir");
        let token = format!("test-token-{}", free_port());
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, &token).expect("token file");
        Cluster {
            dir,
            token,
            token_file,
            nodes: Vec::new(),
            net: None,
            fd_limits: std::collections::HashMap::new(),
            started: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Starts `n` nodes (node 1 bootstraps, the rest join) and waits for `n` voters.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], passing `extra` flags to every node.
    pub async fn start_with(n: u64, extra: &[&str]) -> Cluster {
        Cluster::start_limited(n, extra, &[]).await
    }

    /// Like [`Cluster::start_with`]; each `(id, fds, flags)` starts node `id` (also on every
    /// restart) under an open-file limit of `fds`, soft and hard, with `flags` added.
    pub async fn start_limited(n: u64, extra: &[&str], limited: &[(u64, u64, &[&str])]) -> Cluster {
        let mut cluster = Cluster::empty();
        for id in 1..=n {
            let mut flags: Vec<&str> = extra.to_vec();
            if let Some((_, fds, more)) = limited.iter().find(|(l, _, _)| *l == id) {
                cluster.fd_limits.insert(id, *fds);
                flags.extend_from_slice(more);
            }
            cluster.add_node(id, &flags);
            if id == 1 {
                cluster.wait_leader(Duration::from_secs(20)).await;
            }
        }
        cluster
            .wait_voters(n as usize, Duration::from_secs(30))
            .await;
        cluster.wait_joined(2..=n).await;
        cluster
    }

    /// Like [`Cluster::start_with`], but every node dials its peers through a fault proxy of
    /// its own per directed link (`--peer-via`), so [`Cluster::partition`] can cut any node
    /// off. Clients still reach every node directly.
    pub async fn start_partitionable(n: u64, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::empty();
        let addrs: Vec<(u64, String)> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let net = FaultNet::new(&addrs);
        for (id, addr) in &addrs {
            let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            flags.extend(net.flags_for(*id));
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            cluster.add_node_at(*id, addr.clone(), &flags);
            if *id == 1 {
                cluster.wait_leader(Duration::from_secs(20)).await;
            }
        }
        cluster.net = Some(net);
        cluster
            .wait_voters(n as usize, Duration::from_secs(30))
            .await;
        cluster.wait_joined(2..=n).await;
        cluster
    }

    /// Cuts node `id` off from every peer, both directions: `Mode::Drop` closes its peer
    /// connections, `Mode::Blackhole` leaves them open and silent.
    pub fn partition(&self, id: u64, mode: Mode) {
        self.net
            .as_ref()
            .expect("partition needs Cluster::start_partitionable")
            .isolate(id, mode);
    }

    /// Every peer link passes again.
    pub fn heal(&self) {
        if let Some(net) = &self.net {
            net.heal();
        }
    }

    /// Starts `n` nodes with `extra` flags without waiting through this process's client
    /// (for clusters it cannot speak to, such as TLS ones); the test waits through the CLI.
    pub fn launch(n: u64, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::empty();
        for id in 1..=n {
            cluster.add_node(id, extra);
        }
        cluster
    }

    /// Node 1 alone, started on a copy of `data` (a saved data dir, such as a golden
    /// fixture) whose cluster token is `token`. Nothing is waited for.
    pub fn launch_from(data: &Path, token: &str) -> Cluster {
        Cluster::launch_from_at(data, token, &format!("127.0.0.1:{}", free_port()))
    }

    /// Like [`Cluster::launch_from`], node 1 listening on `addr` (the address its data dir
    /// names it by, as a restored one does).
    pub fn launch_from_at(data: &Path, token: &str, addr: &str) -> Cluster {
        let mut cluster = Cluster::empty();
        cluster.token = token.to_string();
        std::fs::write(&cluster.token_file, token).expect("token file");
        copy_dir(data, &cluster.dir.path().join("node1"));
        cluster.add_node_at(1, addr.to_string(), &[]);
        cluster
    }

    /// Starts node `id` (joining node 1 unless it is node 1).
    pub fn add_node(&mut self, id: u64, extra: &[&str]) {
        let addr = format!("127.0.0.1:{}", free_port());
        self.add_node_at(id, addr, extra);
    }

    fn add_node_at(&mut self, id: u64, addr: String, extra: &[&str]) {
        let http = format!("127.0.0.1:{}", free_port());
        let data = self.dir.path().join(format!("node{id}"));
        std::fs::create_dir_all(&data).expect("data dir");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if id != 1 {
            extra.push("--join".into());
            extra.push(self.nodes[0].addr.clone());
        }
        let mut node = NodeProc {
            id,
            addr,
            http,
            data,
            child: None,
            extra,
            paused: false,
        };
        self.spawn(&mut node);
        self.nodes.push(node);
    }

    fn spawn(&self, node: &mut NodeProc) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.data.join("node.log"))
            .expect("log file");
        let mut command = Command::new(push_bin());
        if let Some(&fds) = self.fd_limits.get(&node.id) {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child being started.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: fds,
                        rlim_max: fds,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command
            .args(["node", "--id", &node.id.to_string(), "--listen", &node.addr])
            .args(["--http", &node.http])
            .arg("--data")
            .arg(&node.data)
            .arg("--token-file")
            .arg(&self.token_file)
            .args(&node.extra)
            .env("PUSH_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn push node");
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child.id());
        node.child = Some(child);
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    pub fn addr(&self, id: u64) -> String {
        self.node(id).addr.clone()
    }

    /// Node `id`'s process id, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).child.as_ref().map(|c| c.id())
    }

    /// Node `id`'s app HTTP address.
    pub fn http(&self, id: u64) -> String {
        self.node(id).http.clone()
    }

    /// SIGSTOP: the node freezes (its sockets stay open, nothing answers) until
    /// [`Cluster::resume`].
    pub fn pause(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(child) = &node.child {
            // SAFETY: signalling a child process this test spawned.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGSTOP);
            }
            node.paused = true;
        }
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(child) = &node.child {
            // SAFETY: signalling a child process this test spawned.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGCONT);
            }
        }
        node.paused = false;
    }

    /// kill -9 (also of a paused node).
    pub fn kill(&mut self, id: u64) {
        self.node_mut(id).paused = false;
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (graceful stop).
    pub fn stop(&mut self, id: u64) {
        if self.node(id).paused {
            self.resume(id);
        }
        if let Some(mut child) = self.node_mut(id).child.take() {
            // SAFETY: signalling a child process this test spawned.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped node again from its data dir, on the same address.
    pub fn restart(&mut self, id: u64) {
        let mut node = std::mem::replace(
            self.node_mut(id),
            NodeProc {
                id,
                addr: String::new(),
                http: String::new(),
                data: PathBuf::new(),
                child: None,
                extra: Vec::new(),
                paused: false,
            },
        );
        assert!(node.child.is_none(), "node {id} is still running");
        self.spawn(&mut node);
        *self.node_mut(id) = node;
    }

    /// Changes the flags node `id` gets from its next start on: drops `remove`, adds `add`.
    pub fn set_flags(&mut self, id: u64, remove: &[&str], add: &[&str]) {
        let node = self.node_mut(id);
        node.extra.retain(|f| !remove.contains(&f.as_str()));
        node.extra.extend(add.iter().map(|f| f.to_string()));
    }

    pub async fn client(&self, id: u64) -> Client {
        let addr = self.addr(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Client::connect(&addr, &self.token).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to node {id}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Node `id`'s status; None when it does not answer within 2 s (down, paused, wedged).
    pub async fn status(&self, id: u64) -> Option<NodeStatus> {
        let ask = async {
            let client = Client::connect(&self.addr(id), &self.token).await.ok()?;
            client.call(Op::Status).await.ok()
        };
        match tokio::time::timeout(Duration::from_secs(2), ask)
            .await
            .ok()??
        {
            Reply::Status(s) => Some(*s),
            _ => None,
        }
    }

    /// Waits until a running node reports a leader; returns its id.
    pub async fn wait_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            for n in self.nodes.iter().filter(|n| n.child.is_some() && !n.paused) {
                if let Some(s) = self.status(n.id).await {
                    if s.role == "leader" {
                        return s.id;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {within:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the leader reports `n` voters.
    pub async fn wait_voters(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let leader = self.wait_leader(within).await;
            if let Some(s) = self.status(leader).await {
                if s.members.iter().filter(|m| m.voter).count() == n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not reach {n} voters\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until each of `ids` says it finished joining. A voter counts from the joint
    /// configuration on, but its join is done only once the uniform one committed: a test
    /// that kills a node in between would leave a joint configuration needing the dead node.
    pub async fn wait_joined(&self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let log = self.data_dir(id).join("node.log");
            let deadline = Instant::now() + Duration::from_secs(30);
            while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("joined the cluster")) {
                assert!(
                    Instant::now() < deadline,
                    "node {id} never finished joining\n{}",
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.status(id).await {
                if s.applied_index.unwrap_or(0) >= index {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply index {index}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the `push` CLI with this cluster's token.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(push_bin())
            .args(args)
            .arg("--token-file")
            .arg(&self.token_file)
            .current_dir(self.dir.path())
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run push")
    }

    /// Writes `app_py` as the one file of app directory `name` (under the cluster's temp dir)
    /// and deploys it through node `to` with `message`; returns the CLI's output.
    pub fn deploy_app(&self, name: &str, app_py: &str, to: u64, message: &str) -> String {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("app dir");
        std::fs::write(dir.join("app.py"), app_py).expect("write app");
        ok(&self.cli(&[
            "deploy",
            dir.to_str().expect("utf8"),
            "--to",
            &self.addr(to),
            "-m",
            message,
        ]))
    }

    /// Waits until `marker` exists (a file a test's Python code touches to say where it
    /// is), failing with `what` and the cluster's logs once `deadline` passes.
    pub async fn wait_for_marker(&self, marker: &Path, deadline: Instant, what: &str) {
        while !marker.exists() {
            assert!(Instant::now() < deadline, "{what}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The tail of every node's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(n.data.join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!(
                "--- node {} ({}) log tail ---\n{}\n",
                n.id,
                n.addr,
                tail.join("\n")
            ));
        }
        out
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let started = std::mem::take(&mut *self.started.lock().unwrap_or_else(|p| p.into_inner()));
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        let prefixes: Vec<String> = started
            .iter()
            .map(|pid| format!("push-worker-{pid}-"))
            .collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if prefixes.iter().any(|p| name.starts_with(p)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Sets a key, panicking with context on failure.
pub async fn set(client: &Client, map: &str, key: &str, value: Value) -> u64 {
    match client
        .call(Op::KvSet {
            map: map.into(),
            key: key.into(),
            value,
        })
        .await
    {
        Ok(Reply::Written { index }) => index,
        other => panic!("set {map}/{key} failed: {other:?}"),
    }
}

/// Reads a key.
pub async fn get(client: &Client, map: &str, key: &str, read: ReadMode) -> Option<Value> {
    match client
        .call(Op::KvGet {
            map: map.into(),
            key: key.into(),
            read,
        })
        .await
    {
        Ok(Reply::Value(v)) => v,
        other => panic!("get {map}/{key} failed: {other:?}"),
    }
}
