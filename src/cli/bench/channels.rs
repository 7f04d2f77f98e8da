//! `push bench channels`: N subscribers spread round-robin over the cluster's nodes read one
//! channel as Server-Sent Events while events are published through the leader at a steady
//! rate; prints publish→receive latency (from just before the publish request to the
//! event's arrival at a subscriber) and delivered/expected, with events whose id does not
//! follow the previous one a subscriber got (a gap or a repeat) counted as out of order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use push_protocol::{Client, Op, Reply, DEFAULT_APP};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{leader_addr, report, summarise};
use crate::cli::target::Target;

#[derive(clap::Args, Debug)]
pub struct ChannelsBench {
    /// Subscribers, spread round-robin over the nodes that serve app HTTP
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Events to publish
    #[arg(long, default_value_t = 200)]
    pub events: u64,
    /// Events published per second
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// The channel (of --app) to use
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// The app whose channel it is
    #[arg(long, default_value = DEFAULT_APP)]
    pub app: String,
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    micros: Vec<u64>,
    out_of_order: u64,
}

/// Opens a subscription at `http` and reads it until its opening comment.
async fn subscribe(http: &str, path: &str) -> anyhow::Result<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(http)
        .await
        .with_context(|| format!("connecting to {http}"))?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {http}\r\n\r\n").as_bytes())
        .await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if !line.contains(" 200") {
        bail!("{http} answered {:?} to {path}", line.trim());
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            bail!("{http} closed the subscription before it started");
        }
        if line.starts_with(": subscribed") {
            return Ok(reader);
        }
    }
}

/// Reads events until `want` of this run's arrived or `deadline`; each event's data is
/// "SEQ MICROS" (MICROS since `start`, taken before its publish). Concurrent publishes may
/// commit in another order than their SEQ, so order is checked on the events' ids.
async fn read_events(
    mut reader: BufReader<TcpStream>,
    start: Instant,
    want: u64,
    deadline: Instant,
) -> Seen {
    let mut seen = Seen::default();
    let mut last_id: Option<u64> = None;
    let mut line = String::new();
    while (seen.micros.len() as u64) < want {
        line.clear();
        let read = tokio::time::timeout_at(deadline.into(), reader.read_line(&mut line)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        let text = line.trim_end();
        if let Some(id) = text
            .strip_prefix("id: ")
            .and_then(|v| v.parse::<u64>().ok())
        {
            // Each subscriber must get the channel's ids one after another: no gap, no repeat.
            if last_id.is_some_and(|last| id != last + 1) {
                seen.out_of_order += 1;
            }
            last_id = Some(id);
            continue;
        }
        let Some(data) = text.strip_prefix("data: ") else {
            continue;
        };
        let mut parts = data.split(' ');
        let (Some(Ok(_seq)), Some(Ok(sent))) = (
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        let now = start.elapsed().as_micros() as u64;
        seen.micros.push(now.saturating_sub(sent));
    }
    seen
}

pub(super) async fn channels(
    target: &Target,
    args: &ChannelsBench,
    json: bool,
) -> anyhow::Result<()> {
    if args.subscribers == 0 || args.events == 0 || args.rate <= 0.0 {
        bail!("--subscribers, --events and --rate must be above 0");
    }
    let _ = crate::server::limits::raise_fd_limit();
    let nodes = super::cluster::statuses(target).await?;
    let https: Vec<String> = nodes.iter().filter_map(|s| s.http.clone()).collect();
    if https.is_empty() {
        bail!("no node of this cluster serves app HTTP (start nodes with --http)");
    }
    let token = target.token()?;
    let client = Arc::new(Client::connect(&leader_addr(target).await?, &token).await?);
    let path = format!("/_push/channels/{}?app={}", args.channel, args.app);
    eprintln!(
        "bench channels: {} subscribers over {} nodes, {} events at {}/s…",
        args.subscribers,
        https.len(),
        args.events,
        args.rate
    );
    let mut readers = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        let http = &https[i % https.len()];
        readers.push(
            subscribe(http, &path)
                .await
                .with_context(|| format!("subscriber {i} of {}", args.subscribers))?,
        );
    }
    let start = Instant::now();
    let publishing = Duration::from_secs_f64(args.events as f64 / args.rate);
    let deadline = start + publishing + Duration::from_secs(30);
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|r| tokio::spawn(read_events(r, start, args.events, deadline)))
        .collect();
    // Sequence numbers count from the channel's next id, so a subscriber knows the order.
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut publishes = Vec::new();
    for seq in 1..=args.events {
        interval.tick().await;
        let (client, app, channel) = (client.clone(), args.app.clone(), args.channel.clone());
        publishes.push(tokio::spawn(async move {
            let data = format!("{seq} {}", start.elapsed().as_micros());
            client.call(Op::Publish { app, channel, data }).await
        }));
    }
    let mut failed = 0u64;
    for p in publishes {
        if !matches!(p.await, Ok(Ok(Reply::Published { .. }))) {
            failed += 1;
        }
    }
    let mut micros = Vec::new();
    let mut out_of_order = 0;
    for t in tasks {
        let seen = t.await.context("a subscriber task")?;
        out_of_order += seen.out_of_order;
        micros.extend(seen.micros);
    }
    let expected = args.subscribers as u64 * args.events;
    let delivered = micros.len() as u64;
    let seconds = start.elapsed().as_secs_f64();
    let summary = summarise(micros, failed, seconds);
    let params = serde_json::json!({
        "subscribers": args.subscribers,
        "nodes": https.len(),
        "events": args.events,
        "rate": args.rate,
        "delivered": delivered,
        "expected": expected,
        "out_of_order": out_of_order,
        "publish_errors": failed,
    });
    if !json {
        println!(
            "channels: delivered {delivered}/{expected} ({:.2}%), {out_of_order} out of order, {failed} publishes failed",
            100.0 * delivered as f64 / expected as f64
        );
    }
    report(
        json,
        "channels",
        params,
        &[("publish→receive".to_string(), summary)],
    )
}
