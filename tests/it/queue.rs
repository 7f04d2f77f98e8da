//! Replicated queues: leases, acks, redelivery, wake-up on put, and many consumers moving
//! every item exactly once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use push_protocol::{Client, Op, QueueItem, Reply, Value};

use crate::support::cluster::ok;
use crate::support::http::get;
use crate::support::Cluster;

async fn take(c: &Client, lease_ms: u64, wait_ms: u64) -> Option<QueueItem> {
    match c
        .call(Op::QueueTake {
            queue: "jobs".into(),
            lease_ms,
            wait_ms,
        })
        .await
    {
        Ok(Reply::Taken(item)) => item,
        other => panic!("take: {other:?}"),
    }
}

async fn ack(c: &Client, id: u64) -> bool {
    match c
        .call(Op::QueueAck {
            queue: "jobs".into(),
            id,
        })
        .await
    {
        Ok(Reply::Acked { ok }) => ok,
        other => panic!("ack: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_acks_redelivery_and_wake_up() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client(2).await;
    let values: Vec<Value> = (1..=3).map(Value::Int).collect();
    match c
        .call(Op::QueuePut {
            queue: "jobs".into(),
            values,
        })
        .await
    {
        Ok(Reply::Put { ids }) => assert_eq!(ids.len(), 3),
        other => panic!("{other:?}"),
    }
    match c
        .call(Op::QueuePeek {
            queue: "jobs".into(),
            n: 2,
        })
        .await
    {
        Ok(Reply::Peeked(items)) => assert_eq!(
            items.iter().map(|i| i.value.clone()).collect::<Vec<_>>(),
            vec![Value::Int(1), Value::Int(2)]
        ),
        other => panic!("{other:?}"),
    }
    // A 3 s lease: long enough that the five requests below (each a Raft round trip, slow on
    // a loaded machine) all happen while item 1 is still leased.
    let first = take(&c, 3_000, 0).await.expect("item 1");
    assert_eq!((first.value.clone(), first.deliveries), (Value::Int(1), 1));
    let second = take(&c, 60_000, 0).await.expect("item 2");
    assert_eq!(second.value, Value::Int(2));
    assert!(ack(&c, second.id).await);
    assert!(!ack(&c, second.id).await, "an item was acked twice");
    let third = take(&c, 60_000, 0).await.expect("item 3");
    assert!(ack(&c, third.id).await);
    // Item 1 is leased: nothing else to give right now.
    assert!(take(&c, 60_000, 0).await.is_none());
    // Its lease runs out and it comes back, marked as a second delivery.
    let again = take(&c, 60_000, 15_000).await.expect("redelivered");
    assert_eq!((again.id, again.deliveries), (first.id, 2));
    assert!(ack(&c, again.id).await);

    // A consumer blocked in take wakes as soon as an item is committed. The waiter's take
    // asks for up to 20 s; the node has read it once a later request on the same connection
    // is answered, and it is still waiting (not finished) when the put is made. Getting the
    // item well before the take's own timeout shows the wake-up path delivered it.
    let addr = cluster.addr(3);
    let waiter_client = std::sync::Arc::new(
        Client::connect(&addr, &cluster.token)
            .await
            .expect("connect"),
    );
    let w = waiter_client.clone();
    let waiter = tokio::spawn(async move {
        let item = take(&w, 60_000, 20_000).await;
        (item, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiter_client.call(Op::Status).await.is_err() {
        assert!(Instant::now() < deadline, "node 3 does not answer");
    }
    assert!(
        !waiter.is_finished(),
        "take returned before any item was put"
    );
    let put_at = Instant::now();
    c.call(Op::QueuePut {
        queue: "jobs".into(),
        values: vec![Value::Str("late".into())],
    })
    .await
    .expect("put");
    let (item, woke) = waiter.await.expect("waiter");
    assert_eq!(
        item.expect("woken with the item").value,
        Value::Str("late".into())
    );
    // Generous (a loaded CI machine): only a wake-up, not the 20 s timeout, delivers this soon.
    assert!(
        woke.duration_since(put_at) < Duration::from_secs(10),
        "woke {:?} after the put",
        woke.duration_since(put_at)
    );

    let out = ok(&cluster.cli(&["queues", "--to", &cluster.addr(1)]));
    assert!(out.contains("jobs") && out.contains("QUEUE"), "{out}");
    c.call(Op::QueuePut {
        queue: "jobs".into(),
        values: vec![Value::Str("peeked".into())],
    })
    .await
    .expect("put");
    let out = ok(&cluster.cli(&["peek", "jobs", "5", "--to", &cluster.addr(3)]));
    assert!(out.contains("'peeked'"), "{out}");
    c.call(Op::QueueTake {
        queue: "jobs".into(),
        lease_ms: 60_000,
        wait_ms: 0,
    })
    .await
    .expect("take");
    match c.call(Op::QueueStats).await {
        Ok(Reply::QueueStats(stats)) => {
            let s = stats.iter().find(|s| s.name == "jobs").expect("jobs");
            assert_eq!((s.ready, s.leased, s.puts, s.acks), (0, 2, 5, 3));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_on_every_node_move_each_item_exactly_once() {
    let cluster = Cluster::start(3).await;
    let c = cluster.client(1).await;
    const N: i64 = 2_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let values = chunk.iter().map(|i| Value::Int(*i)).collect();
        c.call(Op::QueuePut {
            queue: "jobs".into(),
            values,
        })
        .await
        .expect("put");
    }
    let mut consumers = Vec::new();
    for w in 0..6u64 {
        let addr = cluster.addr(w % 3 + 1);
        let token = cluster.token.clone();
        consumers.push(tokio::spawn(async move {
            let c = Client::connect(&addr, &token).await.expect("connect");
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let Some(item) = take(&c, 60_000, 300).await else {
                    break;
                };
                assert!(ack(&c, item.id).await, "ack of {} failed", item.id);
                got.push(item.value);
            }
            got
        }));
    }
    let mut seen = BTreeSet::new();
    for consumer in consumers {
        for value in consumer.await.expect("consumer") {
            let Value::Int(i) = value else {
                panic!("{value:?}")
            };
            assert!(seen.insert(i), "item {i} was processed twice");
        }
    }
    assert_eq!(seen.len() as i64, N, "items were lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_queue_api() {
    let cluster = Cluster::start(1).await;
    let app = cluster.dir.path().join("q");
    std::fs::create_dir_all(&app).expect("dir");
    std::fs::write(
        app.join("app.py"),
        r#"import push

jobs = push.queue("py-jobs")

@push.route("GET", "/cycle")
def cycle():
    jobs.put({"n": 1})
    jobs.put_many(["a", "b"])
    size = jobs.size()
    first = jobs.take(timeout=1)
    acked = first.ack()
    again = first.ack()
    rest = [jobs.take(timeout=1).value for _ in range(2)]
    empty = jobs.take(timeout=0.2)
    return {"size": size, "first": first.value, "acked": acked, "again": again, "rest": rest,
            "empty": empty is None, "leased": jobs.leased(), "peek": jobs.peek()}
"#,
    )
    .expect("write");
    ok(&cluster.cli(&[
        "deploy",
        app.to_str().expect("utf8"),
        "--to",
        &cluster.addr(1),
    ]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&cluster.http(1), "/cycle").await;
        if r.status == 200 {
            assert_eq!(
                r.text(),
                r#"{"size": 3, "first": {"n": 1}, "acked": true, "again": false, "rest": ["a", "b"], "empty": true, "leased": 2, "peek": []}"#
            );
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, r.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
