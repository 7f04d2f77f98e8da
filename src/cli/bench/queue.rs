//! `push bench queue`: puts from N producers, then take+ack from N consumers until empty.

use std::time::{Duration, Instant};

use push_protocol::{Client, Op, Reply, Value};

use super::super::target::Target;
use super::{leader_addr, report, summarise};

#[derive(clap::Args, Debug)]
pub struct QueueBench {
    /// Concurrent producers (and consumers)
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Seconds of puts
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Value size in bytes
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
}

pub(super) async fn queue(target: &Target, args: &QueueBench, json: bool) -> anyhow::Result<()> {
    let addr = leader_addr(target).await?;
    let token = target.token()?;
    let name = format!("bench-{}", crate::clock::now_ms());
    let value = Value::Bytes(vec![b'q'; args.value_size]);
    eprintln!(
        "bench queue: {} producers put for {} s into {name}, then {} consumers take+ack until it is empty…",
        args.clients, args.duration, args.clients
    );
    let run = |phase: &'static str| {
        let mut tasks = Vec::new();
        for _ in 0..args.clients.max(1) {
            let (addr, token, name, value) =
                (addr.clone(), token.clone(), name.clone(), value.clone());
            let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
            tasks.push(tokio::spawn(async move {
                let client = Client::connect(&addr, &token).await?;
                let mut lat = Vec::new();
                let mut errors = 0u64;
                loop {
                    let t = Instant::now();
                    if phase == "put" {
                        if t > deadline || lat.len() >= 200_000 {
                            break;
                        }
                        match client
                            .call(Op::QueuePut {
                                queue: name.clone(),
                                values: vec![value.clone()],
                            })
                            .await
                        {
                            Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                            Err(_) => errors += 1,
                        }
                    } else {
                        let take = Op::QueueTake {
                            queue: name.clone(),
                            lease_ms: 60_000,
                            wait_ms: 0,
                        };
                        match client.call(take).await {
                            Ok(Reply::Taken(Some(item))) => {
                                match client
                                    .call(Op::QueueAck {
                                        queue: name.clone(),
                                        id: item.id,
                                    })
                                    .await
                                {
                                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                                    Err(_) => errors += 1,
                                }
                            }
                            Ok(_) => break,
                            Err(_) => errors += 1,
                        }
                        if t.elapsed() > Duration::from_secs(60) {
                            break;
                        }
                    }
                }
                Ok::<_, push_protocol::ClientError>((lat, errors))
            }));
        }
        tasks
    };
    let mut results = Vec::new();
    for phase in ["put", "take+ack"] {
        let started = Instant::now();
        let mut all = Vec::new();
        let mut errors = 0;
        for task in run(phase) {
            let (lat, e) = task.await??;
            all.extend(lat);
            errors += e;
        }
        results.push((
            phase.to_string(),
            summarise(all, errors, started.elapsed().as_secs_f64()),
        ));
    }
    let params = serde_json::json!({
        "clients": args.clients, "duration": args.duration, "value_size": args.value_size,
    });
    report(json, "queue", params, &results)
}
