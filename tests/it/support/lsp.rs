//! A minimal LSP client for black-box tests: spawns `push lsp`, speaks JSON-RPC with
//! Content-Length framing over its stdin/stdout, and keeps server notifications for checks.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::push_bin;
use super::Cluster;

/// A running `push lsp` and its pipes.
pub struct LspProc {
    child: Child,
    stdin: ChildStdin,
    incoming: mpsc::Receiver<Value>,
    next_id: u64,
    /// Notifications (and server requests) seen so far.
    pub notifications: Vec<Value>,
    /// Responses that arrived while another request's response was awaited (an eval's answer
    /// racing the interrupt that ended it), by id, until asked for.
    responses: HashMap<u64, Value>,
}

impl LspProc {
    /// Starts `push lsp` on `node` of `cluster`, with the cluster's token file.
    pub fn on_node(cluster: &Cluster, node: u64) -> LspProc {
        let token_file = cluster.token_file.to_str().expect("utf8");
        LspProc::start(
            &["--to", &cluster.addr(node), "--token-file", token_file],
            &[],
        )
    }

    /// `push lsp` on node 1 of `cluster`, initialized with `root` and connected (waits,
    /// bounded, for its `push/status` saying so).
    pub fn connected(cluster: &Cluster, root: &std::path::Path) -> LspProc {
        let mut lsp = LspProc::on_node(cluster, 1);
        lsp.initialize(root, json!({}));
        lsp.wait_notification("push/status", Duration::from_secs(30), |p| {
            p["connected"] == true
        });
        lsp
    }

    /// Starts `push lsp ARGS` with `envs`.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> LspProc {
        let mut child = Command::new(push_bin())
            .arg("lsp")
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("PUSH_ADDR")
            .env_remove("PUSH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn push lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(n) = line.strip_prefix("Content-Length: ") {
                        length = n.parse::<usize>().ok();
                    }
                }
                let Some(n) = length else { return };
                let mut body = vec![0; n];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                match serde_json::from_slice(&body) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        LspProc {
            child,
            stdin,
            incoming,
            next_id: 1,
            notifications: Vec::new(),
            responses: HashMap::new(),
        }
    }

    fn send(&mut self, message: &Value) {
        let body = serde_json::to_vec(message).expect("json");
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).expect("write header");
        self.stdin.write_all(&body).expect("write body");
        self.stdin.flush().expect("flush");
    }

    /// Sends a request without waiting; returns its id.
    pub fn send_request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message);
        id
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Waits for the response to request `id`: Ok(result) or Err(error object).
    pub fn response(&mut self, id: u64, within: Duration) -> Result<Value, Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(message) = self.responses.remove(&id) {
                return match message.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .incoming
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no response to request {id} within {within:?}"));
            self.keep(message);
        }
    }

    /// Files a message: a response under its id, anything else with the notifications.
    fn keep(&mut self, message: Value) {
        if message.get("method").is_none() {
            if let Some(id) = message.get("id").and_then(Value::as_u64) {
                self.responses.insert(id, message);
                return;
            }
        }
        // A server request (workDoneProgress and the like) gets an empty answer.
        if let (Some(id), Some(_)) = (message.get("id").cloned(), message.get("method")) {
            self.send(&json!({"jsonrpc": "2.0", "id": id, "result": null}));
        }
        self.notifications.push(message);
    }

    /// Sends a request and waits for its response.
    pub fn request(
        &mut self,
        method: &str,
        params: Value,
        within: Duration,
    ) -> Result<Value, Value> {
        let id = self.send_request(method, params);
        self.response(id, within)
    }

    /// Waits until a notification with `method` satisfying `pred` arrives (or was seen).
    pub fn wait_notification(
        &mut self,
        method: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self
                .notifications
                .iter()
                .find(|n| n["method"] == method && pred(&n["params"]))
            {
                return found["params"].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(message) => self.keep(message),
                Err(_) => panic!(
                    "no {method} notification as expected within {within:?}; saw {:#?}",
                    self.notifications
                ),
            }
        }
    }

    /// initialize + initialized with `root` and `options`.
    pub fn initialize(&mut self, root: &std::path::Path, options: Value) -> Value {
        let uri = format!("file://{}", root.display());
        let result = self
            .request(
                "initialize",
                json!({
                    "processId": null,
                    "rootUri": uri,
                    "capabilities": {},
                    "initializationOptions": options,
                }),
                Duration::from_secs(10),
            )
            .expect("initialize");
        self.notify("initialized", json!({}));
        result
    }

    /// executeCommand with one argument object.
    pub fn command(&mut self, command: &str, arg: Value, within: Duration) -> Result<Value, Value> {
        self.request(
            "workspace/executeCommand",
            json!({"command": command, "arguments": [arg]}),
            within,
        )
    }
}

impl Drop for LspProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
