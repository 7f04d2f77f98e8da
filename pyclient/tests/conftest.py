"""A live 3-node Push cluster for the tests: real `push node` processes on free loopback
ports (the binary is $PUSH_BIN, else target/debug/push of this checkout), torn down after
the session. Waits (bounded) for a leader and three voters before any test runs."""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import push_client

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def push_bin():
    path = os.environ.get("PUSH_BIN") or os.path.join(ROOT, "target", "debug", "push")
    if not os.path.exists(path):
        pytest.exit(f"no push binary at {path}: run `cargo build --bin push` or set PUSH_BIN", returncode=2)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, within=30.0, every=0.05):
    """Polls `check()` until it returns something truthy (returned), failing after `within` s."""
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except push_client.PushError as e:
            last = e
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {within} s (last error: {last})")


class Cluster:
    def __init__(self, n=3):
        self.dir = tempfile.mkdtemp(prefix="push-pyclient-")
        self.token = secrets.token_hex(16)
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(self.token)
        self.procs = []
        self.addrs = []
        for i in range(1, n + 1):
            self.addrs.append(f"127.0.0.1:{free_port()}")
            self._spawn(i)
            if i == 1:
                wait_for("node 1 leading", lambda: self._status(1).get("role") == "leader")
        wait_for("three voters", lambda: sum(m["voter"] for m in self._status(1)["members"]) == n)
        # A voter counts from the joint configuration on; a join is done once the node says
        # so (a node killed before that would leave a configuration needing it).
        for i in range(2, n + 1):
            log = os.path.join(self.dir, f"node{i}", "node.log")
            wait_for(f"node {i} joined", lambda: b"joined the cluster" in open(log, "rb").read())

    def _spawn(self, i):
        data = os.path.join(self.dir, f"node{i}")
        os.makedirs(data)
        args = [push_bin(), "node", "--id", str(i), "--listen", self.addrs[i - 1],
                "--http", f"127.0.0.1:{free_port()}", "--data", data, "--token-file", self.token_file]
        if i > 1:
            args += ["--join", self.addrs[0]]
        log = open(os.path.join(data, "node.log"), "ab")
        env = dict(os.environ, PUSH_LOG="info,openraft=warn")
        self.procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env))

    def _status(self, i):
        with push_client.connect(self.addrs[i - 1], self.token) as c:
            return c.status()

    def leader_addr(self):
        return self.addrs[self._status(1)["leader"] - 1]

    def connect(self, i=1, **kwargs):
        return push_client.connect(self.addrs[i - 1], self.token, **kwargs)

    def cli(self, *args):
        """Runs the push CLI against node 1; returns its stdout (fails on a non-zero exit)."""
        out = subprocess.run([push_bin(), *args, "--to", self.addrs[0], "--token-file", self.token_file],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"push {' '.join(args)} failed: {out.stderr}"
        return out.stdout

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    c = Cluster(3)
    yield c
    c.stop()


@pytest.fixture
def conn(cluster):
    c = cluster.connect()
    yield c
    c.close()
