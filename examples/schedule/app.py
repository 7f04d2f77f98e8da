"""Schedules: each firing runs once in the whole cluster, on one live node.

    push deploy examples/schedule
    push daemons                  # tick: kind schedule, runs counting up
    push tail tick -f             # one line every 5 s, from whichever node ran it
    push kv get schedule ticks
"""

import time

import push

log = push.kv("schedule")


@push.every("5s")
def tick(ctx):
    n = (log.get("ticks") or 0) + 1
    log.set("ticks", n)
    ctx.log.info("tick %d on node %s at %s", n, ctx.node, time.strftime("%H:%M:%S"))


@push.cron("*/1 * * * *")
def every_minute():
    log.set("last-minute", time.time())
    print("a new minute began")


@push.every("10s", on="all")
def everywhere(ctx):
    log.set(f"seen-by-{ctx.node}", time.time())
