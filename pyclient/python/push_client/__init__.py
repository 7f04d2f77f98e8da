"""push_client — drive a Push cluster from any Python program.

The same names and semantics as the in-cluster ``push`` module, over the network:

    import push_client

    c = push_client.connect("127.0.0.1:7001", token="...")
    c.kv("greetings")["en"] = "hello"        # durable once this line returns
    c.queue("jobs").put({"n": 1})
    item = c.queue("jobs").take(timeout=5)   # leased; item.ack() when done
    c.timeseries("temps").append(21.5, key="kitchen")
    c.deploy("examples/hello-web", message="first")
    c.eval("1 + 1")                          # '2' (the repr, computed on the node)

Every network call releases the GIL. Each one has an asyncio variant named with a leading
``a``, run on the event loop's executor so the loop never blocks:

    value = await c.kv("x").aget("k")
    await c.queue("jobs").aput(1)
    await c.aeval("1 + 1")

Values are plain data: None, bool, int, float, str, bytes, list, dict (TypeError otherwise).

Errors: ``PushError`` (base; ``code`` names the node's error code), ``ConnectError``,
``RefusedError`` (``role`` names the role the request needs), ``NotLeaderError`` (nothing
was written; retry), ``OutcomeUnknownError`` (a write's answer was lost: read back before
retrying) and ``EvalError`` (the evaluated code raised; ``traceback`` is the node's).
"""

import asyncio
import functools
import inspect
import os
import sys

from . import _native

__all__ = [
    "connect", "Connection", "Session", "EvalResult", "KV", "Queue", "Item", "Timeseries", "Channel",
    "PushError", "ConnectError", "RefusedError", "NotLeaderError", "OutcomeUnknownError",
    "EvalError", "DEFAULT_APP",
]

PushError = _native.PushError
ConnectError = _native.ConnectError
RefusedError = _native.RefusedError
NotLeaderError = _native.NotLeaderError
OutcomeUnknownError = _native.OutcomeUnknownError

DEFAULT_APP = "main"


class EvalError(PushError):
    """The evaluated code raised on the node. ``type_name`` and ``message`` describe the
    exception, ``traceback`` is the traceback as Python printed it there, ``frames`` a list
    of dicts (file, line, function, source)."""

    def __init__(self, error):
        super().__init__(f"{error['type_name']}: {error['message']}")
        self.code = None
        self.role = None
        self.type_name = error["type_name"]
        self.message = error["message"]
        self.traceback = error["formatted"]
        self.frames = error["frames"]


def _with_async(*names):
    """Class decorator: for each network method ``m`` add a coroutine ``am`` that runs it on
    the running loop's executor (the native call releases the GIL meanwhile)."""
    def decorate(cls):
        for name in names:
            method = getattr(cls, name)

            def make(method):
                @functools.wraps(method)
                async def run(self, *args, **kwargs):
                    loop = asyncio.get_running_loop()
                    call = functools.partial(method, self, *args, **kwargs)
                    return await loop.run_in_executor(None, call)
                run.__name__ = run.__qualname__ = "a" + method.__name__
                run.__doc__ = f"Awaitable {method.__name__}: {method.__doc__ or ''}"
                run.__signature__ = inspect.signature(method)
                return run

            setattr(cls, "a" + name, make(method))
        return cls
    return decorate


def _default_token():
    token = os.environ.get("PUSH_TOKEN")
    if token:
        return token
    path = os.environ.get("PUSH_TOKEN_FILE") or os.path.join(".push", "token")
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    raise ValueError("no token: pass token=..., set PUSH_TOKEN (or PUSH_TOKEN_FILE), or run in the directory where `push up` wrote .push/token")


def connect(addr=None, token=None, *, app=DEFAULT_APP):
    """Connect to the node at ``addr`` ("host:port"; default ``$PUSH_ADDR``) with ``token``
    (the cluster token or a user's secret; default ``$PUSH_TOKEN``, else the file
    ``$PUSH_TOKEN_FILE``, else ``.push/token``).

    ``app`` is the app whose realm ``kv``, ``queue`` and ``timeseries`` names live in and
    that ``deploy``, ``versions`` and ``rollback`` act on, unless a call names another.
    Raises ConnectError when the node cannot be reached, RefusedError for a bad token.
    """
    if addr is None:
        addr = os.environ.get("PUSH_ADDR")
        if not addr:
            raise ValueError("no node address: pass addr='host:port' or set PUSH_ADDR")
    if token is None:
        token = _default_token()
    return Connection(_native.Native(str(addr), str(token)), app)


class EvalResult:
    """The outcome of an evaluation: ``value`` (the repr of the last expression's value, or
    None), ``type_name``, ``error`` (None, or a dict with type_name, message, frames,
    formatted), ``truncated`` (what was cut, if anything), ``micros`` and ``node``."""

    def __init__(self, d):
        self.value = d["value"]
        self.type_name = d["type_name"]
        self.error = d["error"]
        self.truncated = d["truncated"]
        self.micros = d["micros"]
        self.node = d["node"]

    def raise_for_error(self):
        """Raise EvalError when the code raised; else return self."""
        if self.error is not None:
            raise EvalError(self.error)
        return self

    def __repr__(self):
        if self.error:
            return f"<EvalResult raised {self.error['type_name']} on node {self.node}>"
        return f"<EvalResult {self.value!r} on node {self.node}>"


def _forgotten(error):
    """Whether an eval's error says its session does not exist on the node (nothing ran)."""
    return (error is not None and error.get("type_name") == "LookupError"
            and "does not exist on this node" in (error.get("message") or ""))


def _print_output(stream, text):
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write(text)
    out.flush()


@_with_async("eval", "complete", "inspect", "interrupt", "close")
class Session:
    """An evaluation session: its own namespace on the node, kept between evals (as a REPL's).
    Get one with ``Connection.session()``; close it when done (or use ``with``)."""

    def __init__(self, conn, worker=None):
        self._native = conn._native
        self._worker = worker
        self.id = _native.session_open(self._native, worker)

    def eval(self, code, *, module=None, on_output=None):
        """Evaluate ``code`` in this session (or inside app module ``module``: a hot-patch).
        Output is passed to ``on_output(stream, text)`` as it is printed on the node
        (default: written to this process's stdout/stderr). Returns an EvalResult; an
        exception in the code is in its ``error`` (``raise_for_error()`` raises it).

        A session the node no longer knows (it restarted, or the session was closed) is
        reopened and the code run there, with a note on stderr that its names are gone."""
        out = on_output or _print_output
        d = _native.eval(self._native, str(code), self.id, module, out)
        if _forgotten(d["error"]):
            old, self.id = self.id, _native.session_open(self._native, self._worker)
            out("stderr", f"push_client: the node no longer knows session {old} (it restarted, "
                          f"or the session was closed), so the names defined in it are gone; "
                          f"continuing in a new session, {self.id}\n")
            d = _native.eval(self._native, str(code), self.id, module, out)
        return EvalResult(d)

    def complete(self, code, cursor=None):
        """(start, candidates): completions from the live node for ``code`` with the cursor
        at character offset ``cursor`` (default: the end); ``start`` is where the replaced
        text begins (a character offset)."""
        cursor = len(code) if cursor is None else int(cursor)
        byte_cursor = len(code[:cursor].encode("utf-8"))
        start, items = _native.complete(self._native, code, byte_cursor, self.id)
        return len(code.encode("utf-8")[:start].decode("utf-8", "ignore")), items

    def inspect(self, expr):
        """What the node knows of ``expr``'s value: a dict with type_name, signature, doc,
        file, line and repr."""
        return _native.inspect(self._native, str(expr), self.id)

    def interrupt(self):
        """Interrupt the evaluation running in this session (KeyboardInterrupt there);
        returns whether one was running."""
        return _native.interrupt(self._native, self.id)

    def close(self):
        """Free the session's namespace on the node."""
        return _native.session_close(self._native, self.id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<push_client session {self.id} on {self._native.addr}>"


@_with_async("eval", "eval_all", "status", "deploy", "versions", "rollback", "is_complete")
class Connection:
    """A connection to one node of a Push cluster. Get one with ``push_client.connect``.

    Data: ``kv(name)``, ``queue(name)``, ``timeseries(name, ...)`` as in the ``push`` module.
    Code: ``deploy(dir)``, ``versions()``, ``rollback(version=None)``.
    Cluster: ``status()``, ``node_id``. Live code: ``eval(code)``, ``session()``.
    Each network method ``m`` has an awaitable twin ``am``.
    """

    def __init__(self, native, app=DEFAULT_APP):
        self._native = native
        self.app = str(app)
        self._session = None

    @property
    def addr(self):
        """The node's address."""
        return self._native.addr

    @property
    def node_id(self):
        """The id of the node this connection talks to."""
        return self._native.welcome()[0]

    def kv(self, name, app=None):
        """The replicated dict called ``name`` (created on first write) in this connection's
        app's realm, or in app ``app``'s when named."""
        return KV(self, name, app)

    def queue(self, name, app=None):
        """The replicated queue called ``name`` (created on first put) in this connection's
        app's realm, or in app ``app``'s when named."""
        return Queue(self, name, app)

    def timeseries(self, name, keep=None, max_points=None, partitions=None, app=None):
        """The replicated timeseries called ``name``; ``keep`` ("1h", seconds) and
        ``max_points`` set its retention, ``partitions`` how many handler instances split
        its points (default 4)."""
        return Timeseries(self, name, keep, max_points, partitions, app)

    def channel(self, name, app=None):
        """The channel called ``name`` in this connection's app (or app ``app``):
        ``c.channel("news").publish(data)`` reaches every subscriber of
        ``GET /_push/channels/news`` on every node."""
        return Channel(self, name, app)

    def session(self, worker=None):
        """A new evaluation session (its own namespace) on this node, on Python worker
        ``worker`` (1-based) if given."""
        return Session(self, worker)

    def eval(self, code, *, module=None, on_output=None):
        """Evaluate ``code`` on the node in this connection's own session (so names defined
        by one eval are seen by the next) and return the repr of its value (None for
        statements). Output is written to this process's stdout/stderr as the node prints
        it (or passed to ``on_output(stream, text)``). Raises EvalError when the code raised.
        ``module`` evaluates inside a loaded app module instead (a hot-patch)."""
        if self._session is None:
            self._session = Session(self)
        return self._session.eval(code, module=module, on_output=on_output).raise_for_error().value

    def eval_all(self, code):
        """Evaluate ``code`` on every node: {node id: EvalResult, or the error text when the
        node could not be asked}."""
        results = _native.eval_all(self._native, str(code))
        return {n: (EvalResult(r) if isinstance(r, dict) else r) for n, r in results.items()}

    def is_complete(self, code):
        """Whether ``code`` is a complete statement (False: it needs more lines)."""
        return _native.is_complete(self._native, str(code))

    def status(self):
        """This node's report as a dict: id, addr, role, term, leader, members, heads, ..."""
        return _native.status(self._native)

    def deploy(self, source, message="", *, app=None, activate=True, author=None):
        """Deploy a new version of the app: ``source`` is a directory (its ``.py`` modules and
        ``push.ron``, as ``push deploy`` takes them) or a dict {path: source}. Returns a dict:
        version, activated, changed (False when the tree equals HEAD's), uploaded. A version
        that does not compile or import is refused (PushError, HEAD unchanged)."""
        files = _collect(source)
        author = author or os.environ.get("PUSH_AUTHOR") or os.environ.get("USER") or "unknown"
        return _native.deploy(self._native, app or self.app, files, str(message), author, bool(activate))

    def versions(self, app=None):
        """The app's versions, oldest first, as dicts (number, parent, message, author,
        time_ms, files, ...); the HEAD one has ``head`` True."""
        head, versions = _native.versions(self._native, app or self.app)
        for v in versions:
            v["head"] = v["number"] == head
        return versions

    def rollback(self, version=None, *, app=None):
        """Make ``version`` HEAD (default: HEAD's parent); returns the new HEAD."""
        return _native.activate(self._native, app or self.app, None if version is None else int(version))[1]

    def close(self):
        """Close the session (if any) and the connection."""
        if self._session is not None:
            try:
                self._session.close()
            except PushError:
                pass
            self._session = None
        self._native.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<push_client.Connection to {self.addr}, app {self.app!r}>"


def _collect(source):
    if isinstance(source, dict):
        return {str(p): (b.encode("utf-8") if isinstance(b, str) else bytes(b)) for p, b in source.items()}
    root = os.fspath(source)
    if not os.path.isdir(root):
        raise ValueError(f"{root} is not a directory; pass the app's directory or a dict {{path: source}}")
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in filenames:
            if name.endswith(".py") or name == "push.ron":
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    files[os.path.relpath(path, root).replace(os.sep, "/")] = f.read()
    if not files:
        raise ValueError(f"no .py files in {root}; point deploy at the app's directory")
    return files


@_with_async("get", "set", "delete", "cas", "keys", "items")
class KV:
    """A replicated dict, named and shared by every node. Get one with ``conn.kv(name)``.

    Reads are linearizable (they see every write acknowledged before them); ``get(key,
    stale=True)`` reads the node's copy without asking the leader. Writes return once a
    majority has durably stored them.
    """

    def __init__(self, conn, name, app=None):
        self._native = conn._native
        self.name = str(name)
        self.app = str(app or conn.app)
        self._key = _native.qualify(self.app, self.name)

    def get(self, key, default=None, *, stale=False):
        """The value of ``key``, or ``default`` when it is absent."""
        found, value = _native.kv_get(self._native, self._key, str(key), stale)
        return value if found else default

    def __getitem__(self, key):
        found, value = _native.kv_get(self._native, self._key, str(key), False)
        if not found:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        _native.kv_set(self._native, self._key, str(key), value)

    def set(self, key, value):
        """Store ``value`` under ``key`` (durable when this returns)."""
        _native.kv_set(self._native, self._key, str(key), value)

    def __delitem__(self, key):
        if not _native.kv_delete(self._native, self._key, str(key)):
            raise KeyError(key)

    def delete(self, key):
        """Remove ``key``; returns whether it existed."""
        return _native.kv_delete(self._native, self._key, str(key))

    def cas(self, key, expected, new):
        """Set ``key`` to ``new`` only if it currently equals ``expected``.

        ``expected=None`` means "absent"; ``new=None`` deletes. Returns True if it was set.
        """
        return _native.kv_cas(self._native, self._key, str(key), expected, new)

    def keys(self, prefix=""):
        """Keys in order, optionally only those starting with ``prefix``."""
        return _native.kv_keys(self._native, self._key, str(prefix))

    def __contains__(self, key):
        return _native.kv_get(self._native, self._key, str(key), False)[0]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def items(self):
        """(key, value) pairs; each value read separately."""
        return [(k, self.get(k)) for k in self.keys()]

    def __repr__(self):
        return f"push_client.kv({self.name!r}, app={self.app!r})"


@_with_async("ack")
class Item:
    """An item taken from a queue: ``value``, ``id``, ``deliveries``; call ``ack()`` when done."""

    def __init__(self, native, queue, id, value, deliveries):
        self._native = native
        self.queue = queue
        self.id = id
        self.value = value
        self.deliveries = deliveries

    def ack(self):
        """Mark the item done so it is never offered again; False if its lease had run out."""
        return _native.queue_ack(self._native, self.queue, self.id)

    def __repr__(self):
        return f"<push item {self.id} of {self.queue!r}: {self.value!r}>"


@_with_async("put", "put_many", "take", "size", "leased", "peek")
class Queue:
    """A replicated work queue. Get one with ``conn.queue(name)``.

    ``take`` leases an item to the caller; unless ``ack()``ed before the lease ends it is
    offered again (at-least-once delivery). While leased it is never given to anyone else.
    """

    def __init__(self, conn, name, app=None):
        self._native = conn._native
        self.name = str(name)
        self.app = str(app or conn.app)
        self._key = _native.qualify(self.app, self.name)

    def put(self, value):
        """Append one value; returns its id once a majority has stored it."""
        return _native.queue_put(self._native, self._key, [value])[0]

    def put_many(self, values):
        """Append several values in one replicated write; returns their ids."""
        return _native.queue_put(self._native, self._key, list(values))

    def take(self, timeout=None, lease=30.0):
        """The next item, leased for ``lease`` seconds; waits up to ``timeout`` seconds
        (None: up to 60 s) for one to arrive. Returns None when none came."""
        wait = 60.0 if timeout is None else float(timeout)
        found = _native.queue_take(self._native, self._key, int(lease * 1000), int(wait * 1000))
        return None if found is None else Item(self._native, self._key, *found)

    def size(self):
        """Items ready to be taken now."""
        return _native.queue_stats(self._native, self._key)[0]

    def leased(self):
        """Items taken and not yet acknowledged (lease still running)."""
        return _native.queue_stats(self._native, self._key)[1]

    def peek(self, n=10):
        """The first ``n`` ready values, without taking them."""
        return _native.queue_peek(self._native, self._key, int(n))

    def __len__(self):
        return self.size()

    def __repr__(self):
        return f"push_client.queue({self.name!r}, app={self.app!r})"


def _duration_ms(value, what):
    """Seconds (int/float) or a string such as "500ms", "5s", "2m", "1h", "1d" -> ms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = int(value * 1000)
    elif isinstance(value, str):
        text = value.strip().lower()
        units = (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000))
        for suffix, scale in units:
            if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
                ms = int(float(text[: -len(suffix)]) * scale)
                break
        else:
            raise ValueError(f"{what} {value!r} is not a duration like '500ms', '5s', '2m', '1h' or '1d'")
    else:
        raise TypeError(f"{what} must be seconds or a string like '5s', not {type(value).__name__}")
    if ms <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return ms


def _ms(t):
    return None if t is None else int(t * 1000)


@_with_async("append", "append_many", "range", "last")
class Timeseries:
    """A replicated timeseries. Get one with ``conn.timeseries(name, keep=..., max_points=...)``.

    Points are (t, key, value): ``t`` in seconds since the epoch (float), ``key`` an optional
    partition key (e.g. a sensor id). Retention drops points older than ``keep`` and beyond
    ``max_points``.
    """

    def __init__(self, conn, name, keep=None, max_points=None, partitions=None, app=None):
        self._native = conn._native
        self.name = str(name)
        self.app = str(app or conn.app)
        self._key = _native.qualify(self.app, self.name)
        self._config = None
        if keep is not None or max_points is not None or partitions is not None:
            self._config = (
                None if keep is None else _duration_ms(keep, "keep"),
                None if max_points is None else int(max_points),
                4 if partitions is None else int(partitions),
            )

    def append(self, value, t=None, key=None):
        """Add one point (``t`` None: now, by the cluster's clock); returns its sequence number."""
        return self.append_many([(t, key, value)])[0]

    def append_many(self, points):
        """Add several ``(t, key, value)`` points in one replicated write; returns their seqs."""
        rows = [(_ms(t), None if k is None else str(k), v) for t, k, v in points]
        return _native.ts_append(self._native, self._key, rows, self._config)

    def range(self, t0=None, t1=None):
        """Points with ``t0 <= t < t1`` (seconds; None leaves a side open), oldest first, as
        ``(t, key, value)`` tuples."""
        return _native.ts_range(self._native, self._key, _ms(t0), _ms(t1), None)

    def last(self, n=1):
        """The last ``n`` points as ``(t, key, value)`` tuples."""
        return _native.ts_range(self._native, self._key, None, None, int(n))

    def __len__(self):
        for stat in _native.ts_stats(self._native):
            if stat["name"] == self._key:
                return stat["points"]
        return 0

    def __repr__(self):
        return f"push_client.timeseries({self.name!r}, app={self.app!r})"


def _event_text(data):
    """A channel event's data as text: a str as it is, UTF-8 bytes decoded, else JSON."""
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"channel events are text: these bytes are not UTF-8 ({e}); send str, UTF-8 bytes or JSON-able data") from None
    import json
    try:
        return json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise TypeError(f"channel data must be str, UTF-8 bytes or JSON-able, not {type(data).__name__} ({e})") from None


@_with_async("publish")
class Channel:
    """A channel for server push, the same as ``push.channel`` in app code. Get one with
    ``conn.channel(name)``. Subscribers read it as Server-Sent Events at
    ``GET /_push/channels/NAME`` on any node's app HTTP port (``?app=APP`` for another app)."""

    def __init__(self, conn, name, app=None):
        self._native = conn._native
        self.name = str(name)
        self.app = str(app or conn.app)

    def publish(self, data):
        """Publish ``data`` (str, UTF-8 bytes, or JSON-able; at most 64 KiB) as the channel's
        next event; returns its id once a majority stored it."""
        return _native.publish(self._native, self.app, self.name, _event_text(data))

    def __repr__(self):
        return f"push_client.channel({self.name!r}, app={self.app!r})"
