//! `push bench http`: HTTP/1.1 keep-alive load against an app URL from N connections; with
//! `--compare-workers N` it starts two throwaway local nodes itself (1 worker, then N), deploys
//! a CPU-bound route to each and prints both runs and their ratio — how app code scales over
//! worker processes on this machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{report, summarise, Summary};

#[derive(clap::Args, Debug)]
pub struct HttpBench {
    /// The URL to load (http://HOST:PORT/PATH); not needed with --compare-workers
    pub url: Option<String>,
    /// Concurrent keep-alive connections, each with one request in flight
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Stop after this many seconds
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop after this many requests in total
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Start two local nodes (1 worker, then N workers), load a CPU-bound route on each, and
    /// print both with their ratio
    #[arg(long, value_name = "N")]
    pub compare_workers: Option<usize>,
}

/// (host:port, path) of an http:// URL.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?} is not an http:// URL (e.g. http://127.0.0.1:8001/)"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        bail!("{url:?} names no host");
    }
    Ok((host.to_string(), path.to_string()))
}

/// One request on a keep-alive connection; the status.
async fn exchange(reader: &mut BufReader<TcpStream>, request: &[u8]) -> anyhow::Result<u16> {
    reader.get_mut().write_all(request).await?;
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection");
        }
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(status)
}

/// Loads `url` and summarises it.
async fn load(url: &str, args: &HttpBench) -> anyhow::Result<Summary> {
    let (host, path) = split_url(url)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let budget = Arc::new(AtomicU64::new(args.requests));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let stream = TcpStream::connect(&host)
            .await
            .with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        let (request, budget) = (request.clone(), budget.clone());
        tasks.push(tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let (mut micros, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_ok()
            {
                let t = Instant::now();
                match exchange(&mut reader, &request).await {
                    Ok(status) if status < 400 => micros.push(t.elapsed().as_micros() as u64),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (micros, errors)
        }));
    }
    let (mut micros, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (m, e) = task.await?;
        micros.extend(m);
        errors += e;
    }
    Ok(summarise(micros, errors, started.elapsed().as_secs_f64()))
}

/// The CPU-bound route `--compare-workers` deploys: about a millisecond of pure Python.
const CPU_APP: &str = "import push\n\n@push.route('GET', '/cpu')\ndef cpu():\n    total = 0\n    for i in range(20000):\n        total += i * i\n    return str(total)\n";

/// A throwaway local node with `workers` workers, serving [`CPU_APP`]; killed on drop.
struct LocalNode {
    child: std::process::Child,
    dir: std::path::PathBuf,
    http: String,
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn local_node(workers: usize) -> anyhow::Result<LocalNode> {
    let (port, http_port) = (free_port()?, free_port()?);
    let dir = std::env::temp_dir().join(format!("push-bench-http-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let child = std::process::Command::new(&exe)
        .args([
            "node",
            "--id",
            "1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--http", &format!("127.0.0.1:{http_port}"), "--data"])
        .arg(dir.join("data"))
        .args(["--py-workers", &workers.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let node = LocalNode {
        child,
        http: format!("127.0.0.1:{http_port}"),
        dir,
    };
    let app = node.dir.join("app");
    std::fs::create_dir_all(&app)?;
    std::fs::write(app.join("app.py"), CPU_APP)?;
    let token_file = node.dir.join("data/token");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let deployed = std::process::Command::new(&exe)
            .args([
                "deploy",
                "--to",
                &format!("127.0.0.1:{port}"),
                "--token-file",
            ])
            .arg(&token_file)
            .arg(&app)
            .stdin(std::process::Stdio::null())
            .output()?;
        if deployed.status.success() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the local node did not take a deploy within 60 s: {}",
                String::from_utf8_lossy(&deployed.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Served by every worker (loads reach all of them before HEAD counts as served).
    while TcpStream::connect(&node.http).await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://{}/cpu", node.http);
    while load(
        &url,
        &HttpBench {
            url: None,
            connections: 1,
            duration: 0.2,
            requests: 1,
            compare_workers: None,
        },
    )
    .await?
    .ok == 0
    {
        if Instant::now() > deadline {
            bail!("the local node never served /cpu");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(node)
}

pub(super) async fn http(args: &HttpBench, json: bool) -> anyhow::Result<()> {
    let Some(n) = args.compare_workers else {
        let url = args
            .url
            .as_deref()
            .context("give the URL to load (http://HOST:PORT/PATH), or --compare-workers N")?;
        eprintln!(
            "bench http: {} connections against {url} for up to {} s…",
            args.connections, args.duration
        );
        let summary = load(url, args).await?;
        let params = serde_json::json!({ "url": url, "connections": args.connections });
        return report(json, "http", params, &[("GET".into(), summary)]);
    };
    if n < 2 {
        bail!("--compare-workers compares 1 worker with N: give N of 2 or more");
    }
    let mut results = Vec::new();
    for workers in [1, n] {
        eprintln!("bench http: starting a local node with {workers} python worker(s)…");
        let node = local_node(workers).await?;
        let url = format!("http://{}/cpu", node.http);
        eprintln!(
            "bench http: {} connections against {url} for up to {} s…",
            args.connections, args.duration
        );
        results.push((
            format!("cpu route, {workers} workers"),
            load(&url, args).await?,
        ));
    }
    let ratio = results[1].1.per_second / results[0].1.per_second.max(1e-9);
    let params = serde_json::json!({
        "connections": args.connections, "workers": n, "ratio": ratio,
        "cores": std::thread::available_parallelism().map_or(1, |c| c.get()),
    });
    report(json, "http", params, &results)?;
    if !json {
        println!("bench http: {n} workers serve {ratio:.2}x the requests of 1 worker");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8001/a?b=1").unwrap(),
            ("127.0.0.1:8001".into(), "/a?b=1".into())
        );
        assert_eq!(split_url("http://h:1").unwrap().1, "/");
        assert!(split_url("https://h/").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
