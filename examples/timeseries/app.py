"""A timeseries generator with partitioned handlers.

    push deploy examples/timeseries
    push ts                       # readings: points, retention (10 min / 5,000 points)
    push ts readings --last 5
    push daemons                  # stats[0..3]: the four partition handlers, spread over nodes
    curl http://127.0.0.1:8001/stats

A daemon appends a reading for each of 8 sensors every half second. Readings are
partitioned by sensor id; each partition's handler keeps per-sensor running stats.
"""

import math
import time

import push

readings = push.timeseries("readings", keep="10m", max_points=5000, partitions=4)
stats = push.kv("sensor-stats")
SENSORS = [f"sensor-{i}" for i in range(8)]


@push.daemon
def generator(ctx):
    while ctx.sleep(0.5):
        now = time.time()
        readings.append_many(
            [(now, s, round(20 + 5 * math.sin(now / 30 + i), 3)) for i, s in enumerate(SENSORS)]
        )


@readings.handler
def summarise(point):
    current = stats.get(point.key) or {"n": 0, "mean": 0.0}
    n = current["n"] + 1
    mean = current["mean"] + (point.value - current["mean"]) / n
    stats.set(point.key, {"n": n, "mean": round(mean, 3), "last": point.value})


@push.route("GET", "/stats")
def show():
    return {s: stats.get(s) for s in SENSORS}


@push.route("GET", "/recent")
def recent():
    return [list(p) for p in readings.range(time.time() - 5)]
