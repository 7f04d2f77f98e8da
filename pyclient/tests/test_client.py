"""push_client against a live 3-node cluster: data, code, eval, asyncio, the GIL, and the
exception classes (refused, not-leader, outcome-unknown), each on real processes."""

import asyncio
import os
import signal
import threading
import time

import pytest

import push_client
from conftest import Cluster, wait_for


def test_kv_like_the_push_module_and_seen_on_every_node(cluster, conn):
    greetings = conn.kv("greetings")
    greetings["en"] = "hello"
    greetings.set("all", [None, True, 7, 2.5, "s", b"\x00\xff", {"k": [1, 2]}])
    for i in (1, 2, 3):
        with cluster.connect(i) as other:
            assert other.kv("greetings")["en"] == "hello"
            assert other.kv("greetings").get("all") == [None, True, 7, 2.5, "s", b"\x00\xff", {"k": [1, 2]}]
    assert "en" in greetings and "fr" not in greetings
    assert greetings.get("fr", "absent") == "absent"
    with pytest.raises(KeyError):
        greetings["fr"]
    assert greetings.cas("fr", None, "bonjour") is True
    assert greetings.cas("fr", "wrong", "salut") is False
    assert sorted(greetings.keys()) == ["all", "en", "fr"]
    assert greetings.keys(prefix="e") == ["en"]
    assert dict(greetings.items())["fr"] == "bonjour"
    assert greetings.delete("fr") is True and greetings.delete("fr") is False
    del greetings["en"]
    assert len(greetings) == 1
    assert greetings.get("all", stale=True) is not None


def test_realms_keep_apps_apart(cluster, conn):
    conn.kv("settings")["mode"] = "main"
    conn.kv("settings", app="shop")["mode"] = "shop"
    assert conn.kv("settings")["mode"] == "main"
    with cluster.connect(2, app="shop") as shop:
        assert shop.kv("settings")["mode"] == "shop"


def test_a_value_that_cannot_be_stored_is_refused_and_nothing_is_lost(conn):
    kv = conn.kv("bad-input")
    kv["k"] = 1
    with pytest.raises(TypeError, match="cannot store a object"):
        kv["k"] = object()
    with pytest.raises(OverflowError, match="store it as a str"):
        kv["k"] = 2**70
    with pytest.raises(ValueError, match="control character"):
        conn.kv("bad\x01name")
    assert kv["k"] == 1


def test_queue_put_take_ack(conn):
    jobs = conn.queue("jobs")
    ids = jobs.put_many([{"n": 1}, {"n": 2}])
    first = jobs.put({"n": 3})
    assert len(ids) == 2 and first > ids[-1]
    assert jobs.peek(2) == [{"n": 1}, {"n": 2}]
    item = jobs.take(timeout=5, lease=30)
    assert item.value == {"n": 1} and item.deliveries == 1
    assert jobs.leased() == 1 and jobs.size() == 2
    assert item.ack() is True
    assert jobs.leased() == 0
    while jobs.size():
        jobs.take(timeout=1).ack()
    assert jobs.take(timeout=0.2) is None


def test_timeseries_append_and_range(conn):
    temps = conn.timeseries("temps", keep="1h", max_points=100)
    now = float(int(time.time()))
    temps.append(20.0, t=now, key="kitchen")
    temps.append_many([(now + 1, "hall", 18.5), (now + 2, "kitchen", 21.0)])
    assert temps.range(now, now + 2) == [(now, "kitchen", 20.0), (now + 1, "hall", 18.5)]
    assert temps.last(1) == [(now + 2, "kitchen", 21.0)]
    assert len(temps) == 3
    with pytest.raises(ValueError, match="not a duration"):
        conn.timeseries("temps", keep="soon")


APP_V1 = 'import push\n\n@push.route("GET", "/v")\ndef v(request):\n    return "one"\n\ndef answer():\n    return 41\n'
APP_V2 = APP_V1.replace("41", "42")


def test_deploy_versions_rollback(conn, tmp_path):
    first = conn.deploy({"app.py": APP_V1}, message="one", app="pyclient")
    assert first["changed"] and first["activated"] and first["uploaded"] == 1
    again = conn.deploy({"app.py": APP_V1}, app="pyclient")
    assert not again["changed"] and again["version"] == first["version"]
    (tmp_path / "app.py").write_text(APP_V2)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "junk.py").write_text("not deployed")
    second = conn.deploy(tmp_path, message="two", app="pyclient")
    assert second["version"] == first["version"] + 1
    versions = conn.versions(app="pyclient")
    assert [v["message"] for v in versions] == ["one", "two"]
    assert [v["head"] for v in versions] == [False, True]
    assert conn.rollback(app="pyclient") == first["version"]
    assert [v["head"] for v in conn.versions(app="pyclient")] == [True, False]


def test_a_broken_deploy_is_refused_and_head_stays(conn):
    good = conn.deploy({"app.py": APP_V1}, app="broken")
    with pytest.raises(push_client.PushError, match="app.py") as raised:
        conn.deploy({"app.py": "def broken(:\n"}, app="broken")
    assert raised.value.code is not None
    assert [v["head"] for v in conn.versions(app="broken")][-1] is True
    assert [v["number"] for v in conn.versions(app="broken") if v["head"]] == [good["version"]]
    with pytest.raises(ValueError, match="not a directory"):
        conn.deploy("/nonexistent/app/dir")


def test_status(cluster, conn):
    status = conn.status()
    assert status["id"] == conn.node_id == 1
    assert status["leader"] in (1, 2, 3)
    assert sorted(m["id"] for m in status["members"]) == [1, 2, 3]


def test_eval_keeps_names_streams_output_and_raises(conn):
    assert conn.eval("1 + 1") == "2"
    conn.eval("x = 20")
    assert conn.eval("x * 2") == "40"
    chunks = []
    conn.eval("import sys\nprint('out')\nprint('err', file=sys.stderr)", on_output=lambda s, t: chunks.append((s, t)))
    assert "".join(t for s, t in chunks if s == "stdout") == "out\n"
    assert "".join(t for s, t in chunks if s == "stderr") == "err\n"
    with pytest.raises(push_client.EvalError) as raised:
        conn.eval("def f():\n    raise ValueError('boom')\nf()")
    assert raised.value.type_name == "ValueError" and raised.value.message == "boom"
    assert "Traceback" in raised.value.traceback and "boom" in raised.value.traceback
    assert conn.is_complete("x = 1") and not conn.is_complete("def g():")
    results = conn.eval_all("1 + 2")
    assert sorted(results) == [1, 2, 3] and {r.value for r in results.values()} == {"3"}


def test_sessions_complete_inspect_interrupt(conn):
    with conn.session() as s:
        s.eval("import os\nanswer = 42")
        start, items = s.complete("os.pa", 5)
        assert start == 3 and "path" in items
        found = s.inspect("os.path.join")
        assert found["signature"] and "join" in found["repr"]
        ran = {}
        looping = threading.Thread(target=lambda: ran.update(r=s.eval("while True:\n    pass")))
        looping.start()
        wait_for("the loop running", lambda: s.interrupt())
        looping.join(timeout=10)
        assert not looping.is_alive()
        assert ran["r"].error["type_name"] == "KeyboardInterrupt"
        assert s.eval("answer").value == "42"


def test_a_session_the_node_forgot_is_reopened_with_a_note(conn):
    s = conn.session()
    s.eval("x = 41")
    # The node forgets the session, as a restart would.
    assert push_client._native.session_close(conn._native, s.id)
    old, notes = s.id, []
    r = s.eval("y = 1\ny + 1", on_output=lambda stream, text: notes.append((stream, text)))
    assert r.error is None and r.value == "2"
    assert s.id != old
    assert any(stream == "stderr" and f"no longer knows session {old}" in text for stream, text in notes), notes
    # The new session is a fresh namespace: names of the forgotten one are gone.
    assert s.eval("x", on_output=lambda *_: None).error["type_name"] == "NameError"
    s.close()


def test_network_calls_release_the_gil(conn, cluster):
    waiting = conn.queue("gil")
    taken, calling = {}, threading.Event()

    def take():
        calling.set()
        taken["item"] = waiting.take(timeout=20)

    taker = threading.Thread(target=take)
    taker.start()
    assert calling.wait(timeout=10)
    # While the other thread waits on the node, this one still runs Python and calls.
    with cluster.connect(2) as other:
        other.kv("gil")["k"] = "v"
        assert conn.kv("gil")["k"] == "v"
        assert taker.is_alive()
        other.queue("gil").put("wake")
    taker.join(timeout=20)
    assert taken["item"].value == "wake"


def test_asyncio_variants(conn):
    async def main():
        kv = conn.kv("async")
        await asyncio.gather(*(kv.aset(f"k{i}", i) for i in range(5)))
        values = await asyncio.gather(*(kv.aget(f"k{i}") for i in range(5)))
        assert values == [0, 1, 2, 3, 4]
        assert await kv.akeys() == [f"k{i}" for i in range(5)]
        q = conn.queue("async")
        await q.aput("x")
        item = await q.atake(timeout=5)
        assert await item.aack()
        assert await conn.aeval("6 * 7") == "42"
        assert (await conn.astatus())["id"] == 1
        return True

    assert asyncio.run(main())
    assert "Awaitable get" in push_client.KV.aget.__doc__


def test_refused_names_the_role_needed(cluster):
    out = cluster.cli("user", "add", "watcher", "--role", "viewer")
    lines = out.splitlines()
    secret = lines[next(i for i, l in enumerate(lines) if l.startswith("secret")) + 1].strip()
    with push_client.connect(cluster.addrs[0], secret) as viewer:
        with pytest.raises(push_client.RefusedError) as raised:
            viewer.kv("greetings")["x"] = 1
        assert raised.value.role in ("operator", "deployer", "developer", "admin")
        assert raised.value.code == "Forbidden"
    with pytest.raises(push_client.RefusedError):
        push_client.connect(cluster.addrs[0], "wrong-token")
    with pytest.raises(push_client.ConnectError, match="is a Push node running there"):
        push_client.connect(f"127.0.0.1:{__import__('conftest').free_port()}", "t")


def all_stopped(pid):
    """Whether every thread of process ``pid`` is stopped (state T in /proc)."""
    task = f"/proc/{pid}/task"
    try:
        states = []
        for tid in os.listdir(task):
            with open(f"{task}/{tid}/stat") as f:
                states.append(f.read().rsplit(") ", 1)[1][:1])
    except OSError:
        return False
    return bool(states) and all(s == "T" for s in states)


def test_not_leader_and_outcome_unknown():
    """A paused leader leaves a forwarded write's outcome unknown; with a majority gone no
    leader can take a write."""
    c = Cluster(3)
    paused = None
    try:
        def agreed():
            leaders = {c._status(i)["leader"] for i in (1, 2, 3)}
            return leaders.pop() if len(leaders) == 1 else None
        leader = wait_for("every node naming one leader", agreed)
        follower = next(i for i in (1, 2, 3) if i != leader)
        conn = c.connect(follower)
        conn.kv("o")["warm"] = 1
        assert c._status(follower)["leader"] == leader
        paused = c.procs[leader - 1]
        os.kill(paused.pid, signal.SIGSTOP)
        # A thread inside an fdatasync stops only when the call returns: wait until every
        # thread of the leader has stopped, so the write below cannot be answered.
        wait_for("every thread of the paused leader stopped", lambda: all_stopped(paused.pid))
        with pytest.raises(push_client.OutcomeUnknownError, match="outcome is unknown"):
            conn.kv("o")["k"] = 1
        # The two left elect a new leader; kill it and the last node has no majority.
        new = wait_for("a new leader", lambda: (lambda l: l if l not in (None, leader) else None)(c._status(follower)["leader"]))
        if new == follower:
            follower = next(i for i in (1, 2, 3) if i not in (leader, new))
        c.procs[new - 1].kill()
        c.procs[new - 1].wait()
        with c.connect(follower) as last:
            with pytest.raises(push_client.NotLeaderError, match="leader"):
                last.kv("o")["k"] = 2
        conn.close()
    finally:
        if paused is not None:
            os.kill(paused.pid, signal.SIGCONT)
        c.stop()


def test_kernel_install_refuses_what_it_cannot_do_safely(cluster, tmp_path):
    import subprocess
    from conftest import push_bin
    base = [push_bin(), "kernel", "install", "--to", cluster.addrs[0], "--prefix", str(tmp_path)]
    out = subprocess.run(base + ["--token", cluster.token], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--token-file" in out.stderr
    out = subprocess.run(base + ["--python", "/bin/false"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "pip install ./pyclient" in out.stderr
    assert not (tmp_path / "share").exists()
