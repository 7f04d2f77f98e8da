//! etcd load driver for `scripts/bench-vs-etcd`, shaped like `push bench kv`: N clients, each
//! with its own connection and one request in flight, 256-byte values over 1,000 keys, bounded
//! by time and count; prints one JSON object in `push bench --json`'s shape.
//!
//! ```text
//! etcd-driver put      --endpoint URL --clients N --duration S --value-size B
//! etcd-driver get      --endpoint URL --clients N --duration S      (linearizable reads)
//! etcd-driver leader   --endpoints URL,URL,...                      (prints the leader's URL)
//! etcd-driver failover --endpoints URL,... --pids PID,...           (kill -9 leader, time next put)
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use etcd_client::Client;

const KEYS: u64 = 1000;
const MAX_REQUESTS: u64 = 1_000_000;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn usage() -> Error {
    "usage: etcd-driver put|get --endpoint URL [--clients N] [--duration S] [--value-size B] \
     | leader --endpoints URL,... | failover --endpoints URL,... --pids PID,..."
        .into()
}

/// `--name value` pairs after the mode.
fn flags(args: &[String]) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(name) = it.next() {
        let name = name.strip_prefix("--").ok_or_else(usage)?;
        let value = it.next().ok_or_else(usage)?;
        out.insert(name.to_string(), value.clone());
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, Error> {
    match flags.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("--{name} {v}: not a number").into()),
    }
}

/// Latency summary in `push bench`'s field names.
fn summary(mut micros: Vec<u64>, errors: u64, seconds: f64) -> serde_json::Value {
    micros.sort_unstable();
    let pick = |q: f64| -> f64 {
        if micros.is_empty() {
            return 0.0;
        }
        let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[i] as f64 / 1000.0
    };
    serde_json::json!({
        "ok": micros.len(), "errors": errors, "seconds": seconds,
        "per_second": micros.len() as f64 / seconds.max(1e-9),
        "p50_ms": pick(0.50), "p99_ms": pick(0.99),
        "max_ms": micros.last().map_or(0.0, |m| *m as f64 / 1000.0),
    })
}

async fn load(read: bool, flags: &HashMap<String, String>) -> Result<(), Error> {
    let endpoint = flags.get("endpoint").ok_or_else(usage)?.clone();
    let clients: u64 = number(flags, "clients", 1)?;
    let duration: f64 = number(flags, "duration", 5.0)?;
    let value_size: usize = number(flags, "value-size", 256)?;
    let value = vec![b'x'; value_size];
    let mut connected = Vec::new();
    for _ in 0..clients.max(1) {
        connected.push(Client::connect([endpoint.as_str()], None).await?);
    }
    // Make sure reads find a key, and warm up a connection.
    connected[0].put("bench/k0", value.clone(), None).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(duration);
    let per_client = MAX_REQUESTS / clients.max(1);
    let mut tasks = Vec::new();
    for (c, mut client) in connected.into_iter().enumerate() {
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let mut i = c as u64;
            let mut n = 0u64;
            while Instant::now() < deadline && n < per_client {
                n += 1;
                let key = format!("bench/k{}", i % KEYS);
                i += 7;
                let t = Instant::now();
                let ok = if read {
                    client.get(key, None).await.is_ok()
                } else {
                    client.put(key, value.clone(), None).await.is_ok()
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    let name = if read {
        format!("linearizable reads {clients} clients")
    } else {
        format!("writes {clients} clients")
    };
    let out = serde_json::json!({
        "bench": "etcd-kv",
        "params": {"clients": clients, "duration": duration, "value_size": value_size, "read": read},
        "results": { name: summary(all, errors, started.elapsed().as_secs_f64()) },
    });
    println!("{out}");
    Ok(())
}

/// The index (into `endpoints`) of the member that is the leader, asked of every member; an
/// error until every member answers (so a restarted member has rejoined).
async fn leader_of(endpoints: &[String]) -> Result<usize, Error> {
    let mut ids = Vec::new();
    let mut leader = None;
    for url in endpoints {
        let status = async {
            let mut c = Client::connect([url.as_str()], None).await?;
            c.status().await
        };
        match tokio::time::timeout(Duration::from_secs(2), status).await {
            Ok(Ok(s)) => {
                let me = s.header().map(|h| h.member_id());
                ids.push(me);
                leader = leader.or(Some(s.leader()));
            }
            _ => return Err(format!("etcd member {url} does not answer").into()),
        }
    }
    let leader = leader.ok_or("no etcd member answered")?;
    ids.iter()
        .position(|id| *id == Some(leader))
        .ok_or_else(|| "the leader is not among the endpoints".into())
}

fn list(flags: &HashMap<String, String>, name: &str) -> Result<Vec<String>, Error> {
    Ok(flags
        .get(name)
        .ok_or_else(usage)?
        .split(',')
        .map(str::to_string)
        .collect())
}

async fn failover(flags: &HashMap<String, String>) -> Result<(), Error> {
    let endpoints = list(flags, "endpoints")?;
    let pids: Vec<i32> = list(flags, "pids")?
        .iter()
        .map(|p| p.parse().map_err(|_| format!("--pids: {p} is not a pid")))
        .collect::<Result<_, _>>()?;
    if pids.len() != endpoints.len() || endpoints.len() < 2 {
        return Err("--pids must name one pid per endpoint, and at least two".into());
    }
    let leader = leader_of(&endpoints).await?;
    let survivor = (leader + 1) % endpoints.len();
    let mut client = Client::connect([endpoints[survivor].as_str()], None).await?;
    client.put("bench/failover", "0", None).await?;
    let killed = Instant::now();
    // SAFETY: kill(2) on the pid the caller gave for this etcd member.
    if unsafe { libc::kill(pids[leader], libc::SIGKILL) } != 0 {
        return Err(format!("cannot kill pid {}", pids[leader]).into());
    }
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        // A put that reached the dead leader hangs rather than failing; retry it soon (a put
        // takes ~1 ms here), so the measured gap is not rounded up to a long timeout.
        let put = client.put("bench/failover", attempts.to_string(), None);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(250), put).await {
            break;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            return Err("no put was acknowledged within 30 s of the kill".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gap = killed.elapsed();
    let out = serde_json::json!({
        "bench": "etcd-failover",
        "params": {"killed": endpoints[leader], "written_through": endpoints[survivor], "attempts": attempts},
        "results": {"kill -9 leader to next ack": summary(vec![gap.as_micros() as u64], 0, gap.as_secs_f64())},
    });
    println!("{out}");
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = async {
        let mode = args.first().ok_or_else(usage)?;
        let flags = flags(&args[1..])?;
        match mode.as_str() {
            "put" => load(false, &flags).await,
            "get" => load(true, &flags).await,
            "leader" => {
                let endpoints = list(&flags, "endpoints")?;
                println!("{}", endpoints[leader_of(&endpoints).await?]);
                Ok(())
            }
            "failover" => failover(&flags).await,
            _ => Err(usage()),
        }
    }
    .await;
    if let Err(e) = result {
        eprintln!("etcd-driver: {e}");
        std::process::exit(1);
    }
}
