"""Queue producer and consumer daemons.

    push deploy examples/queue-workers
    push daemons                 # producer on one node, two consumers on two others
    push queues                  # jobs: ready/leased drain as the consumers work
    push tail consumer -f        # what the consumers log
    curl http://127.0.0.1:8001/progress

The producer puts a batch of jobs every second until it has made `TOTAL`; each consumer
takes a job (leased for 10 s), records it, and acks it. Kill a consumer's node: its daemon
starts on a live node within seconds and an unacked job is offered again after its lease.
"""

import push

TOTAL = 1000
jobs = push.queue("jobs")
done = push.kv("jobs-done")


@push.daemon
def producer(ctx):
    made = done.get("made", 0)
    while made < TOTAL and not ctx.stopping.is_set():
        batch = list(range(made, min(made + 50, TOTAL)))
        jobs.put_many(batch)
        made += len(batch)
        done.set("made", made)
        ctx.log.info("queued %d jobs (%d total)", len(batch), made)
        ctx.sleep(1)


@push.daemon(replicas=2)
def consumer(ctx):
    while not ctx.stopping.is_set():
        item = jobs.take(timeout=1, lease=10)
        if item is None:
            continue
        done.cas(str(item.value), None, ctx.node)  # the first node to finish it
        item.ack()


@push.route("GET", "/progress")
def progress():
    return {"made": done.get("made", 0), "ready": jobs.size(), "leased": jobs.leased()}
