"""Tasks on this node: daemon units, partition handlers, schedule firings and lambdas.

Rust decides *what* runs here (the leader's placement, read from the replicated state) and
calls ``reconcile``; this module decides *how*: one Python thread per unit, cooperative stop
(``ctx.stopping``, then an exception after a deadline), restart with backoff after a crash,
and a ring of log lines per unit for ``push tail``. Nothing here blocks the caller: stops and
restarts happen on the units' own threads.
"""

import builtins
import collections
import sys
import threading
import time
import traceback
import types

import _push_native
import _push_pm
import _push_runtime
import _push_session

# Seconds a daemon gets to return after ctx.stopping is set before it is interrupted.
STOP_DEADLINE = 5.0
# Log lines kept per unit.
MAX_LINES = 2000
# Crash backoff: first delay, cap, and how long a run must last to reset it.
BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET = 1.0, 30.0, 60.0

_lock = threading.RLock()
_units = {}       # (app, unit) -> _Unit
_schedules = {}   # (app, name) -> _Unit (kind "schedule": one thread per firing)
_rings = {}       # (app, unit) -> _Ring, kept across restarts


class _Ring:
    """The last MAX_LINES lines a unit printed or logged, numbered from 1 (secret values the
    node's code read show as "[secret]")."""

    def __init__(self, label):
        self.label = label
        self.lines = collections.deque(maxlen=MAX_LINES)
        self.seq = 0
        self.partial = ""
        self.lock = threading.Lock()

    def write(self, stream, text, echo=True):
        with self.lock:
            text = self.partial + str(text)
            *complete, self.partial = text.split("\n")
            for line in complete:
                line = _push_runtime.redact(line)
                self.seq += 1
                self.lines.append((self.seq, line))
                if not echo:
                    continue
                try:
                    sys.__stderr__.write(f"[{self.label}] {line}\n")
                except (OSError, ValueError, AttributeError):
                    pass

    def tee(self, text):
        """A logging record's line: kept for ``push tail``; the node log already has it."""
        self.write(1, text, echo=False)

    def after(self, seq, limit=1000):
        with self.lock:
            return [(n, t) for n, t in self.lines if n > seq][:limit]


def _ring(app, unit):
    with _lock:
        ring = _rings.get((app, unit))
        if ring is None:
            ring = _rings[(app, unit)] = _Ring(f"{app}/{unit}")
        return ring


class Context:
    """What a daemon is given.

    ``stopping``  a ``threading.Event`` set when the daemon should return (redeploy, restart,
                  node shutdown); loop with ``while not ctx.stopping.is_set()`` or ``ctx.sleep``
    ``node``      this node's id
    ``name``      the daemon's name (``name[i]`` for partition ``i`` of a handler)
    ``partition`` the partition number for partition handlers, else None
    ``version``   the app version the daemon's code came from
    ``log``       a ``logging.Logger`` whose lines show in ``push tail NAME`` and ``push logs``
    """

    def __init__(self, name, version, partition, ring):
        self.stopping = threading.Event()
        self.name = name
        self.version = version
        self.partition = partition
        self.node = _push_native.node_info()["id"]
        # Records propagate to the root handler, which tags them and tees them into the
        # unit's ring (see _Unit._main).
        import logging
        self.log = logging.getLogger(f"push.task.{name}")
        self.log.propagate = True
        self.log.setLevel(logging.INFO)
        for h in list(self.log.handlers):
            self.log.removeHandler(h)

    def sleep(self, seconds):
        """Sleep up to ``seconds``; returns False (early) when the daemon should stop."""
        return not self.stopping.wait(seconds)

    def __repr__(self):
        return f"<push task context {self.name} on node {self.node}>"


class Point:
    """A timeseries point given to a partition handler: ``t`` (seconds), ``key``, ``value``, ``seq``."""

    __slots__ = ("seq", "t", "key", "value", "series")

    def __init__(self, series, seq, t_ms, key, value):
        self.series, self.seq, self.t, self.key, self.value = series, seq, t_ms / 1000.0, key, value

    def __repr__(self):
        return f"<point {self.series}#{self.seq} t={self.t} key={self.key!r} {self.value!r}>"


def _wants_context(fn):
    import inspect
    try:
        return len(inspect.signature(fn).parameters) > 0
    except (TypeError, ValueError):
        return True


def _interrupt(thread):
    import ctypes
    if thread is not None and thread.is_alive() and thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit))


class _Unit:
    """One daemon unit (or a schedule's bookkeeping) on this node."""

    def __init__(self, app, unit, spec, version, generation):
        self.app, self.unit, self.spec = app, unit, spec
        self.kind = spec["kind"]
        self.version, self.generation = version, generation
        self.partition = None
        if self.kind == "partition":
            self.partition = int(unit[unit.rindex("[") + 1:-1])
        self.ring = _ring(app, unit)
        self.ctx = Context(unit, version, self.partition, self.ring)
        self.state = "starting" if self.kind != "schedule" else "idle"
        self.restarts = 0
        self.runs = 0
        self.error = None
        self.since = time.time()
        self.thread = None

    # -- daemons and partition handlers ---------------------------------------------------

    def start(self, after=None):
        """Start the unit's thread; it first waits for ``after`` (a stopping unit) to end."""
        self.thread = threading.Thread(target=self._main, args=(after,), name=f"push-{self.unit}", daemon=True)
        self.thread.start()

    def _main(self, after):
        if after is not None:
            after.wait_stopped()
        _push_session._local.sink = self.ring
        _push_runtime.set_origin(self.app, self.version, self.unit, self.ring.tee)
        backoff = BACKOFF_FIRST
        while not self.ctx.stopping.is_set():
            self.state, self.since = "running", time.time()
            self.runs += 1
            started = time.monotonic()
            try:
                if self.kind == "partition":
                    self._partition_loop()
                else:
                    fn = self.spec["fn"]
                    fn(self.ctx) if _wants_context(fn) else fn()
                if self.ctx.stopping.is_set():
                    break
                self.state = "exited"
                self.ring.write(1, f"returned; starting again in {backoff:.0f}s\n")
            except SystemExit:
                if self.ctx.stopping.is_set():
                    break
                self._crashed(sys.exc_info()[1], backoff)
            except BaseException as exc:  # noqa: BLE001 - a daemon's crash is recorded, not fatal
                if self.ctx.stopping.is_set():
                    break
                self._crashed(exc, backoff)
            if time.monotonic() - started > BACKOFF_RESET:
                backoff = BACKOFF_FIRST
            if self.ctx.stopping.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.restarts += 1
        self.state, self.since = "stopped", time.time()

    def _crashed(self, exc, backoff):
        self.error = _push_runtime.format_exception(exc)
        _push_pm.keep(exc, self.app, self.version, f"{self.kind} {self.unit}")
        self.state, self.since = "backoff", time.time()
        self.ring.write(1, f"crashed (restart in {backoff:.0f}s):\n{self.error}\n")

    def _partition_loop(self):
        series = self.spec["series"]
        fn = self.spec["fn"]
        cursor = _push_native.ts_cursor(series, self.unit)
        # Record the cursor before the first read: from now on retention keeps the points
        # this partition has not processed (in a backlog only handlers read).
        _push_native.ts_commit(series, self.unit, cursor)
        while not self.ctx.stopping.is_set():
            points = _push_native.ts_after(series, self.partition, cursor, 256, 500)
            done = cursor
            for seq, t_ms, key, value in points:
                if self.ctx.stopping.is_set():
                    break
                fn(Point(series, seq, t_ms, key, value))
                done = seq
            if done > cursor:
                _push_native.ts_commit(series, self.unit, done)
                cursor = done

    def stop(self):
        """Ask the unit to stop; a background thread enforces the deadline."""
        if self.ctx.stopping.is_set():
            return
        self.ctx.stopping.set()
        self.state = "stopping"
        threading.Thread(target=self._enforce, name=f"push-stop-{self.unit}", daemon=True).start()

    def _enforce(self):
        thread = self.thread
        if thread is None:
            return
        thread.join(STOP_DEADLINE)
        if thread.is_alive():
            self.ring.write(1, f"did not stop within {STOP_DEADLINE:.0f}s of ctx.stopping; interrupting it\n")
            _interrupt(thread)
            thread.join(2.0)

    def wait_stopped(self):
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_DEADLINE + 3.0)

    # -- schedules ------------------------------------------------------------------------

    def fire(self, spec, version):
        if self.thread is not None and self.thread.is_alive():
            self.ring.write(1, "still running the previous firing; this one is skipped\n")
            return
        self.spec, self.version = spec, version
        self.thread = threading.Thread(target=self._fire_main, name=f"push-{self.unit}", daemon=True)
        self.thread.start()

    def _fire_main(self):
        _push_session._local.sink = self.ring
        _push_runtime.set_origin(self.app, self.version, self.unit, self.ring.tee)
        self.state, self.since = "running", time.time()
        self.runs += 1
        fn = self.spec["fn"]
        try:
            fn(self.ctx) if _wants_context(fn) else fn()
            self.state = "idle"
        except BaseException as exc:  # noqa: BLE001
            self.error = _push_runtime.format_exception(exc)
            _push_pm.keep(exc, self.app, self.version, f"schedule {self.unit}")
            self.state = "failed"
            self.ring.write(1, f"failed:\n{self.error}\n")
        self.since = time.time()

    def report(self):
        return {
            "app": self.app, "unit": self.unit, "kind": self.kind, "state": self.state,
            "restarts": self.restarts, "runs": self.runs, "version": self.version,
            "error": self.error, "since_ms": int(self.since * 1000),
        }


def _spec_for(version, unit):
    name = unit.split("[", 1)[0] if unit.endswith("]") else unit
    return version.tasks.get(name)


def reconcile(app, wanted):
    """Make this node run exactly ``wanted`` ([unit, generation] pairs) of ``app`` at HEAD.

    A unit keeps running when its spec's hash (code and placement) and its generation are
    unchanged, even across a deploy; otherwise it is stopped cooperatively and started anew.
    """
    version = _push_runtime.head_version(app)
    if version is None:
        return
    wanted = dict((u, g) for u, g in wanted)
    with _lock:
        for key in [k for k in _units if k[0] == app]:
            unit = _units[key]
            spec = _spec_for(version, key[1])
            keep = (
                key[1] in wanted and spec is not None
                and spec["hash"] == unit.spec["hash"] and wanted[key[1]] == unit.generation
            )
            if keep:
                unit.version = version.number
                continue
            unit.stop()
            if key[1] not in wanted or spec is None:
                _units.pop(key)
                _retire(unit)
        for name, generation in wanted.items():
            spec = _spec_for(version, name)
            if spec is None or spec["kind"] not in ("daemon", "partition"):
                continue
            old = _units.get((app, name))
            if old is not None and not old.ctx.stopping.is_set():
                continue
            unit = _Unit(app, name, spec, version.number, generation)
            if old is not None:
                unit.restarts = old.restarts + 1
            _units[(app, name)] = unit
            unit.start(after=old)


_retired = []  # stopped units still reported until their thread ends


def _retire(unit):
    _retired.append(unit)


def stop_all():
    """Stop every unit (node shutdown); returns once they ended or the deadline passed."""
    with _lock:
        units = list(_units.values())
        _units.clear()
    for u in units:
        u.stop()
    for u in units:
        u.wait_stopped()


def fire(app, name):
    """Run one firing of schedule ``name`` on this node, on a thread of its own."""
    version = _push_runtime.head_version(app)
    spec = version.tasks.get(name) if version else None
    if spec is None or spec["kind"] != "schedule":
        return False
    with _lock:
        unit = _schedules.get((app, name))
        if unit is None:
            unit = _schedules[(app, name)] = _Unit(app, name, spec, version.number, 0)
    unit.fire(spec, version.number)
    return True


def reports():
    """JSON list of every unit and schedule this node runs or ran, for the heartbeat."""
    import json
    with _lock:
        _retired[:] = [u for u in _retired if u.thread is not None and u.thread.is_alive()]
        units = list(_units.values()) + list(_schedules.values()) + list(_retired)
    return json.dumps([u.report() for u in units])


def lines(app, unit, after):
    """Log lines of ``unit`` numbered above ``after`` (for its partitions too, by prefix)."""
    with _lock:
        rings = [(u, r) for (a, u), r in _rings.items() if a == app and (u == unit or u.startswith(unit + "["))]
    out = []
    for u, ring in rings:
        prefix = "" if u == unit else f"[{u}] "
        out += [(n, prefix + t) for n, t in ring.after(after)]
    return out


def run_lambda(path, code, name, module, args):
    """Call a function for ``push.run``: an app function by path, or a shipped code object."""
    if path is not None:
        fn = _resolve(path)
    else:
        globals_ = None
        if module and module in sys.modules:
            globals_ = sys.modules[module].__dict__
        if globals_ is None:
            import push
            globals_ = {"__builtins__": builtins, "__name__": "__push_lambda__", "push": push}
        fn = types.FunctionType(_push_runtime.unpack_code(code), globals_, name)
    _push_runtime.set_origin(None, None, "lambda")
    try:
        return fn(*args)
    except BaseException as exc:
        label = path or f"lambda {name}"
        call = {"label": label, "fn": fn, "path": path, "args": list(args)}
        _push_pm.keep(exc, _push_runtime.current_app(), _push_runtime.serving("main"), f"lambda {label}", call=call)
        raise
    finally:
        _push_runtime.clear_origin()


def _resolve(path):
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{path!r} is not module:function (e.g. 'jobs:rebuild')")
    mod = sys.modules.get(module)
    if mod is None:
        import importlib
        mod = importlib.import_module(module)
    obj = mod
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
