//! The chaos test's clients: kv workers recording per-key histories, queue producers and
//! consumers recording the queue history, each counting ok / failed / unknown outcomes.

use super::*;

/// Runs kv operations until told to stop; returns its history per key and counts.
pub(super) async fn kv_worker(env: Env, w: u64) -> (BTreeMap<String, Vec<Operation>>, Counts) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(w);
    let mut conn = Conn::new(&env, w as usize);
    let mut history: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    let mut counts = Counts::default();
    let mut last_seen: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    let mut seq = 0i64;
    while !env.stop.load(Ordering::Relaxed) {
        let key = KEYS[rng.gen_range(0..env.keys)];
        seq += 1;
        let unique = (w as i64) * 1_000_000 + seq;
        let roll = rng.gen_range(0..10);
        let (op, call) = if roll < 4 {
            let op = Op::KvGet {
                map: MAP.into(),
                key: key.into(),
                read: ReadMode::Linearizable,
            };
            (op, Call::Read(None))
        } else if roll < 7 {
            let op = Op::KvSet {
                map: MAP.into(),
                key: key.into(),
                value: Value::Int(unique),
            };
            (op, Call::Write(unique))
        } else {
            let expected = last_seen.get(key).copied().flatten();
            let op = Op::KvCas {
                map: MAP.into(),
                key: key.into(),
                expected: expected.map(Value::Int),
                new: Some(Value::Int(unique)),
            };
            let call = Call::Cas {
                expected,
                new: unique,
                ok: None,
            };
            (op, call)
        };
        let start = env.t0.elapsed();
        let answer = conn.call(op).await;
        let end = env.t0.elapsed();
        let record = match (answer, call) {
            (Answer::Ok(Reply::Value(v)), Call::Read(_)) => {
                let v = int(&v);
                last_seen.insert(key, v);
                counts.ok += 1;
                Some((Some(end), Call::Read(v)))
            }
            (Answer::Ok(Reply::Written { .. }), call @ Call::Write(_)) => {
                counts.ok += 1;
                Some((Some(end), call))
            }
            (Answer::Ok(Reply::Cas { ok, current, .. }), Call::Cas { expected, new, .. }) => {
                counts.ok += 1;
                last_seen.insert(key, if ok { Some(new) } else { int(&current) });
                let ok = Some(ok);
                Some((Some(end), Call::Cas { expected, new, ok }))
            }
            (Answer::Ok(other), _) => panic!("unexpected reply {other:?}"),
            (Answer::Failed, _) => {
                counts.failed += 1;
                None
            }
            // A read of unknown outcome has no effect to account for.
            (Answer::Unknown, Call::Read(_)) => {
                counts.unknown += 1;
                None
            }
            (Answer::Unknown, call) => {
                counts.unknown += 1;
                Some((None, call))
            }
        };
        if let Some((end, call)) = record {
            history
                .entry(key.to_string())
                .or_default()
                .push(Operation { start, end, call });
        }
    }
    (history, counts)
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) ok: usize,
    pub(super) failed: usize,
    pub(super) unknown: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.unknown += o.unknown;
    }
}

/// Puts unique values until told to stop.
pub(super) async fn producer(env: Env, p: u64, history: Arc<Mutex<QueueHistory>>) -> Counts {
    let mut conn = Conn::new(&env, p as usize);
    let mut counts = Counts::default();
    let mut seq = 0i64;
    while !env.stop.load(Ordering::Relaxed) {
        seq += 1;
        let value = (p as i64 + 1) * 1_000_000 + seq;
        let op = Op::QueuePut {
            queue: QUEUE.into(),
            values: vec![Value::Int(value)],
        };
        let outcome = match conn.call(op).await {
            Answer::Ok(Reply::Put { .. }) => Outcome::Ok,
            Answer::Ok(other) => panic!("unexpected reply {other:?}"),
            Answer::Failed => Outcome::Failed,
            Answer::Unknown => Outcome::Unknown,
        };
        match outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Unknown => counts.unknown += 1,
        }
        history.lock().expect("history").puts.insert(value, outcome);
    }
    counts
}

/// Takes and acks until told to stop (or, when draining, until the queue stays empty).
pub(super) async fn consumer(
    env: Env,
    name: String,
    home: usize,
    history: Arc<Mutex<QueueHistory>>,
) -> Counts {
    let mut conn = Conn::new(&env, home);
    let mut counts = Counts::default();
    while !env.stop.load(Ordering::Relaxed) {
        let op = Op::QueueTake {
            queue: QUEUE.into(),
            lease_ms: LEASE_MS,
            wait_ms: 200,
        };
        let item = match conn.call(op).await {
            Answer::Ok(Reply::Taken(Some(item))) => item,
            Answer::Ok(Reply::Taken(None)) => {
                counts.ok += 1;
                continue;
            }
            Answer::Ok(other) => panic!("unexpected reply {other:?}"),
            Answer::Failed => {
                counts.failed += 1;
                continue;
            }
            Answer::Unknown => {
                counts.unknown += 1;
                continue;
            }
        };
        counts.ok += 1;
        let Value::Int(value) = item.value else {
            panic!("unexpected item {item:?}");
        };
        history
            .lock()
            .expect("history")
            .taken
            .push((value, name.clone()));
        let op = Op::QueueAck {
            queue: QUEUE.into(),
            id: item.id,
        };
        let outcome = match conn.call(op).await {
            Answer::Ok(Reply::Acked { ok: true }) => Outcome::Ok,
            Answer::Ok(Reply::Acked { ok: false }) | Answer::Failed => Outcome::Failed,
            Answer::Ok(other) => panic!("unexpected reply {other:?}"),
            Answer::Unknown => Outcome::Unknown,
        };
        match outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Unknown => counts.unknown += 1,
        }
        history
            .lock()
            .expect("history")
            .acks
            .push((value, name.clone(), outcome));
    }
    counts
}
