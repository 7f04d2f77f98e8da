//! `push bench kv`: durable writes or linearizable reads from N concurrent clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use push_protocol::{Client, Op, ReadMode, Value};

use super::super::target::Target;
use super::{leader_addr, report, summarise};

#[derive(clap::Args, Debug)]
pub struct KvBench {
    /// Concurrent clients, each with its own connection and one request in flight
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Stop after this many seconds
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Stop after this many requests in total
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Value size in bytes
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Distinct keys written
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Linearizable reads instead of writes
    #[arg(long)]
    pub read: bool,
    /// Talk to the given node even when it is not the leader (measures forwarding)
    #[arg(long)]
    pub no_leader: bool,
}

pub(super) async fn kv(target: &Target, args: &KvBench, json: bool) -> anyhow::Result<()> {
    let addr = if args.no_leader {
        target.addr(None)?
    } else {
        leader_addr(target).await?
    };
    let token = target.token()?;
    let value = Value::Bytes(vec![b'x'; args.value_size]);
    eprintln!(
        "bench kv: {} clients {} {}-byte values through {addr} for up to {} s…",
        args.clients,
        if args.read { "reading" } else { "writing" },
        args.value_size,
        args.duration
    );
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(args.requests));
    let mut clients = Vec::new();
    for _ in 0..args.clients.max(1) {
        clients.push(Client::connect(&addr, &token).await?);
    }
    if !args.read {
        // Make sure reads find keys, and warm up connections.
        clients[0]
            .call(Op::KvSet {
                map: "bench".into(),
                key: "k0".into(),
                value: value.clone(),
            })
            .await?;
    }
    eprintln!(
        "bench kv {}: {} clients against {addr}, {}-byte values, up to {:.1} s or {} requests…",
        if args.read {
            "linearizable reads"
        } else {
            "durable writes"
        },
        clients.len(),
        args.value_size,
        args.duration,
        args.requests
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let budget = budget.clone();
        let value = value.clone();
        let (read, keys) = (args.read, args.keys.max(1));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = c as u64;
            while Instant::now() < deadline
                && budget
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |b| b.checked_sub(1),
                    )
                    .is_ok()
            {
                let key = format!("k{}", i % keys);
                i += 7;
                let op = if read {
                    Op::KvGet {
                        map: "bench".into(),
                        key,
                        read: ReadMode::Linearizable,
                    }
                } else {
                    Op::KvSet {
                        map: "bench".into(),
                        key,
                        value: value.clone(),
                    }
                };
                let t = Instant::now();
                match client.call(op).await {
                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    let s = summarise(all, errors, started.elapsed().as_secs_f64());
    let params = serde_json::json!({
        "clients": args.clients, "duration": args.duration, "value_size": args.value_size,
        "keys": args.keys, "read": args.read, "via_leader": !args.no_leader,
    });
    let name = format!(
        "{} {} clients",
        if args.read {
            "linearizable reads"
        } else {
            "writes"
        },
        args.clients
    );
    report(json, "kv", params, &[(name, s)])
}
