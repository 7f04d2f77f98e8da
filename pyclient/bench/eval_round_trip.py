"""Eval round trip from Python: p50/p99 of ``c.eval("1+1")`` through push_client (sync and
asyncio), beside the same request from Rust (``push bench eval``) and a whole ``push eval``
invocation (process start, connect, eval). Bounded: at most N requests and S seconds each.

    python pyclient/bench/eval_round_trip.py HOST:PORT [--token-file F] [-n 2000] [--secs 10]
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import time

import push_client


def summary(name, samples):
    samples = sorted(samples)
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000
    print(f"{name:<34} n={len(samples):<5} p50 {p(0.5):7.3f} ms   p99 {p(0.99):7.3f} ms   mean {statistics.mean(samples) * 1000:7.3f} ms")


def bounded(n, secs, once):
    samples, stop = [], time.monotonic() + secs
    while len(samples) < n and time.monotonic() < stop:
        t = time.perf_counter()
        once()
        samples.append(time.perf_counter() - t)
    return samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("--token-file")
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--push", default=os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "push"))
    args = ap.parse_args()
    token = open(args.token_file).read().strip() if args.token_file else None
    c = push_client.connect(args.addr, token)
    assert c.eval("1+1") == "2"
    summary('push_client c.eval("1+1")', bounded(args.n, args.secs, lambda: c.eval("1+1")))

    async def run_async():
        samples, stop = [], time.monotonic() + args.secs
        while len(samples) < args.n and time.monotonic() < stop:
            t = time.perf_counter()
            await c.aeval("1+1")
            samples.append(time.perf_counter() - t)
        return samples
    summary('push_client await c.aeval("1+1")', asyncio.run(run_async()))

    auth = ["--token-file", args.token_file] if args.token_file else []
    cli = lambda: subprocess.run([args.push, "eval", args.addr, "1+1", *auth], check=True, capture_output=True)
    summary("push eval (whole process)", bounded(min(args.n, 50), args.secs, cli))
    print("push bench eval (Rust client, same session kind):")
    subprocess.run([args.push, "bench", "eval", "--to", args.addr, *auth, "--requests", str(args.n), "--duration", str(args.secs)], check=True)


if __name__ == "__main__":
    main()
