"""push — the API app code uses to talk to its Push cluster.

Everything here is replicated through Raft or describes the cluster:

    import push

    greetings = push.kv("greetings")      # a replicated dict
    greetings["en"] = "hello"             # durable once this line returns

    @push.route("GET", "/hello")
    def hello(request):
        return {"greeting": greetings.get("en"), "version": push.version}

Values stored in the cluster are plain data: None, bool, int, float, str, bytes, list, dict.
Anything else raises TypeError naming the type.

Data:     kv(name), queue(name), timeseries(name, keep=, max_points=, partitions=); each
          in the running app's realm, another app's with app="other"
Settings: secret(name), config(key, default=None), app() — read at every call, so a
          change (`push secret set`, `push config set`) needs no deploy
Web:      @route(method, path) (path parameters like /items/{id}), Response,
          channel(name).publish(data) — server push: every node serves the channel's
          events to browsers as Server-Sent Events at GET /_push/channels/NAME
Tasks:    @daemon(on=, replicas=, where=), @every("5s"), @cron("*/5 * * * *"),
          @series.handler (partitioned), run(fn, *args, on="any"|"all"|node|"tag:T")

Attributes computed on access:
    push.version  the version of the app whose code is running (HEAD unless pinned)
    push.node     this node: id, addr, role
    push.cluster  the cluster: leader, nodes()
"""

import _push_native as _native

__all__ = [
    "kv", "queue", "timeseries", "channel", "secret", "config", "app", "route", "Response", "daemon", "every", "cron", "run",
    "version", "node", "cluster", "PushError", "RemoteError",
]

PushError = _native.PushError


class RemoteError(PushError):
    """``push.run`` failed on one or more nodes. ``results`` maps node id to the value or to
    the error text; ``errors`` holds only the failures."""

    def __init__(self, message, results, errors):
        super().__init__(message)
        self.results = results
        self.errors = errors


class KV:
    """A replicated dict, named and shared by every node. Get one with ``push.kv(name)``.

    Reads are linearizable (they see every write acknowledged before them); ``get(key,
    stale=True)`` reads this node's copy without asking the leader. Writes return once a
    majority has durably stored them.
    """

    def __init__(self, name, app=None):
        self.name = str(name)
        self.app = _realm(app)
        self._key = _native.qualify(self.app, self.name)

    def get(self, key, default=None, *, stale=False):
        """The value of ``key``, or ``default`` when it is absent."""
        found, value = _native.kv_get(self._key, str(key), stale)
        return value if found else default

    def __getitem__(self, key):
        found, value = _native.kv_get(self._key, str(key), False)
        if not found:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        _native.kv_set(self._key, str(key), value)

    def set(self, key, value):
        """Store ``value`` under ``key`` (durable when this returns)."""
        _native.kv_set(self._key, str(key), value)

    def __delitem__(self, key):
        if not _native.kv_delete(self._key, str(key)):
            raise KeyError(key)

    def delete(self, key):
        """Remove ``key``; returns whether it existed."""
        return _native.kv_delete(self._key, str(key))

    def cas(self, key, expected, new):
        """Set ``key`` to ``new`` only if it currently equals ``expected``.

        ``expected=None`` means "absent"; ``new=None`` deletes. Returns True if it was set.
        """
        return _native.kv_cas(self._key, str(key), expected, new)

    def keys(self, prefix=""):
        """Keys in order, optionally only those starting with ``prefix``."""
        return _native.kv_keys(self._key, str(prefix))

    def __contains__(self, key):
        return _native.kv_get(self._key, str(key), False)[0]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def items(self):
        """(key, value) pairs; each value read separately."""
        return [(k, self.get(k)) for k in self.keys()]

    def __repr__(self):
        return f"push.kv({self.name!r}, app={self.app!r})"


def kv(name, app=None):
    """The replicated dict called ``name`` (created on first write) in this app's realm, or
    in app ``app``'s when named: each app's dicts, queues and timeseries are its own."""
    return KV(name, app)


class Item:
    """An item taken from a queue: ``value``, ``id``, ``deliveries``; call ``ack()`` when done."""

    def __init__(self, queue, id, value, deliveries):
        self.queue = queue
        self.id = id
        self.value = value
        self.deliveries = deliveries

    def ack(self):
        """Mark the item done so it is never offered again; False if its lease had run out."""
        return _native.queue_ack(self.queue, self.id)

    def __repr__(self):
        return f"<push item {self.id} of {self.queue!r}: {self.value!r}>"


class Queue:
    """A replicated work queue. Get one with ``push.queue(name)``.

    ``take`` leases an item to the caller; unless ``ack()``ed before the lease ends it is
    offered again (at-least-once delivery). While leased it is never given to anyone else.
    """

    def __init__(self, name, app=None):
        self.name = str(name)
        self.app = _realm(app)
        self._key = _native.qualify(self.app, self.name)

    def put(self, value):
        """Append one value; returns its id once a majority has stored it."""
        return _native.queue_put(self._key, [value])[0]

    def put_many(self, values):
        """Append several values in one replicated write; returns their ids."""
        return _native.queue_put(self._key, list(values))

    def take(self, timeout=None, lease=30.0):
        """The next item, leased for ``lease`` seconds; waits up to ``timeout`` seconds
        (None: up to 60 s) for one to arrive. Returns None when none came."""
        wait = 60.0 if timeout is None else float(timeout)
        found = _native.queue_take(self._key, int(lease * 1000), int(wait * 1000))
        return None if found is None else Item(self._key, found[0], found[1], found[2])

    def size(self):
        """Items ready to be taken now."""
        return _native.queue_stats(self._key)[0]

    def leased(self):
        """Items taken and not yet acknowledged (lease still running)."""
        return _native.queue_stats(self._key)[1]

    def peek(self, n=10):
        """The first ``n`` ready values, without taking them."""
        return _native.queue_peek(self._key, int(n))

    def __len__(self):
        return self.size()

    def __repr__(self):
        return f"push.queue({self.name!r}, app={self.app!r})"


def queue(name, app=None):
    """The replicated queue called ``name`` (created on first put) in this app's realm, or in
    app ``app``'s when named."""
    return Queue(name)


def route(method, path=None, timeout=None, methods=None):
    """Decorator: serve HTTP requests for ``path`` with this function.

        @push.route("/hello")                       # GET
        @push.route("GET", "/hello")
        @push.route("/items/{id:int}", methods=["GET", "PUT"])
        @push.route(["POST", "PUT"], "/files/{name:path}")

    Path parameters: ``{name}`` matches one path segment (URL-decoded), ``{name:int}`` an
    integer, ``{name:path}`` the rest of the path. Each is passed to the function as a keyword
    argument of that name, and is also on ``request.params``. Several methods: a list, the
    ``methods=`` keyword, or one decorator per method; ``"*"`` is any method, and a GET route
    also answers HEAD. A path no route matches is a 404; a path whose routes take other
    methods is a 405 with an ``Allow`` header.

    The function may take a ``request`` (any parameter that is not a path parameter; it gets
    method, path, query, headers, body, params, text, json()) and returns a str, bytes, a
    JSON-able dict/list, ``(status, body)``, ``(status, body, headers)``, a ``push.Response``,
    or a generator (or other iterator) of str/bytes chunks, each sent to the client as soon as
    it is produced (chunked transfer encoding; ``push.Response(generator, headers=...)`` sets
    the status and headers of a streamed answer, e.g. ``text/event-stream``).

    ``timeout`` (seconds, default 30, at most 300): a handler that has not started its answer
    by then is interrupted (KeyboardInterrupt) and the client gets 504; a worker whose handler
    does not stop within 2 s more is restarted. A streamed answer may run past it.
    """
    if path is None:
        method, path = None, method
    import _push_routes
    methods = _push_routes.methods_of(method, methods)
    _push_routes.compile_path(path)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
            raise ValueError(f"push.route timeout must be a number of seconds in (0, 300], not {timeout!r}")
        timeout = float(timeout)

    def register(fn):
        import _push_runtime
        _push_runtime.register_route(methods, path, fn, timeout)
        return fn

    return register


class Response:
    """An HTTP response with an explicit status and headers."""

    def __init__(self, body=b"", status=200, headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        # An iterator (a generator, say) is streamed: each chunk goes out as it is produced.
        self.body = body if hasattr(body, "__next__") else bytes(body)
        self.status = int(status)
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}

    def __repr__(self):
        size = f"{len(self.body)} bytes" if isinstance(self.body, bytes) else "streamed"
        return f"<Response {self.status}, {size}>"


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


class Timeseries:
    """A replicated timeseries. Get one with ``push.timeseries(name, keep=..., max_points=...)``.

    Points are (t, key, value): ``t`` in seconds since the epoch (float), ``key`` an optional
    partition key (e.g. a sensor id). Retention drops points older than ``keep`` and beyond
    ``max_points``. ``@series.handler`` registers a partitioned handler: points are routed by
    key to one of ``partitions`` handler instances, spread across the cluster's nodes, each
    seeing its partition's points in order (at least once).
    """

    def __init__(self, name, keep=None, max_points=None, partitions=None, app=None):
        self.name = str(name)
        self.app = _realm(app)
        self._key = _native.qualify(self.app, self.name)
        self._config = None
        if keep is not None or max_points is not None or partitions is not None:
            self._config = (
                None if keep is None else _duration_ms(keep, "keep"),
                None if max_points is None else int(max_points),
                4 if partitions is None else int(partitions),
            )
        self.partitions = 4 if partitions is None else int(partitions)

    def append(self, value, t=None, key=None):
        """Add one point (``t`` None: now, by the cluster's clock); returns its sequence number."""
        return self.append_many([(t, key, value)])[0]

    def append_many(self, points):
        """Add several ``(t, key, value)`` points in one replicated write; returns their seqs."""
        rows = [(None if t is None else int(t * 1000), None if k is None else str(k), v) for t, k, v in points]
        return _native.ts_append(self._key, rows, self._config)

    def range(self, t0=None, t1=None):
        """Points with ``t0 <= t < t1`` (seconds; None leaves a side open), oldest first, as
        ``(t, key, value)`` tuples."""
        return _native.ts_range(self._key, _ms(t0), _ms(t1), None)

    def last(self, n=1):
        """The last ``n`` points as ``(t, key, value)`` tuples."""
        return _native.ts_range(self._key, None, None, int(n))

    def handler(self, fn=None, *, name=None, where=None):
        """Decorator: run ``fn(point)`` for every point, one instance per partition.

        ``point`` has ``t``, ``key``, ``value`` and ``seq``. Instances are placed across the
        nodes (``where`` narrows them, as for ``push.daemon``) and moved when a node dies;
        each resumes after the last point its predecessor finished.
        """
        def register(fn):
            spec = {
                "kind": "partition", "name": name or fn.__name__, "series": self._key,
                "partitions": self.partitions, "where": _where(where), "on": "any", "replicas": 1,
            }
            import _push_runtime
            _push_runtime.register_task(spec, fn)
            return fn
        return register(fn) if fn is not None else register

    def __len__(self):
        for stat in _native.ts_stats():
            if stat["name"] == self._key:
                return stat["points"]
        return 0

    def __repr__(self):
        return f"push.timeseries({self.name!r}, app={self.app!r})"


def _ms(t):
    return None if t is None else int(t * 1000)


def timeseries(name, keep=None, max_points=None, partitions=None, app=None):
    """The replicated timeseries called ``name`` in this app's realm (or app ``app``'s);
    ``keep`` ("1h", seconds) and ``max_points`` set its retention, ``partitions`` how many
    handler instances split its points (default 4)."""
    return Timeseries(name, keep, max_points, partitions, app)


class Channel:
    """A channel for server push: each ``publish`` is replicated through Raft and reaches every
    subscriber of the channel, on every node, once and in order. Browsers subscribe with
    ``new EventSource("/_push/channels/NAME")`` on any node's app HTTP port (add ``?app=APP``
    for an app other than the default one); a reconnecting subscriber resumes after the last
    event it saw (``Last-Event-ID``) from the channel's history, which keeps the last 1,000
    events and at most 1 MiB of data.

    Names are 1 to 128 letters, digits, ``_``, ``-``, ``.`` or ``:``. Get one with
    ``push.channel(name)``.
    """

    def __init__(self, name, app=None):
        self.name = str(name)
        self.app = _realm(app)

    def publish(self, data):
        """Publish ``data`` as the channel's next event; returns its id (1, 2, 3, … per
        channel). A str is sent as it is, bytes must be UTF-8 text, anything else is sent as
        JSON. At most 64 KiB per event. Returns once a majority has durably stored it."""
        if isinstance(data, str):
            text = data
        elif isinstance(data, (bytes, bytearray, memoryview)):
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"channel events are text: these bytes are not UTF-8 ({e}); send str, UTF-8 bytes or JSON-able data") from None
        else:
            import json
            try:
                text = json.dumps(data, separators=(",", ":"))
            except (TypeError, ValueError) as e:
                raise TypeError(f"channel data must be str, UTF-8 bytes or JSON-able, not {type(data).__name__} ({e})") from None
        return _native.publish(self.app, self.name, text)

    def __repr__(self):
        return f"push.channel({self.name!r}, app={self.app!r})"


def channel(name, app=None):
    """The channel called ``name`` in this app (or app ``app``): ``push.channel("news")
    .publish({"title": "hi"})`` sends an event to every subscriber of
    ``GET /_push/channels/news`` on every node."""
    return Channel(name, app)


def _realm(app):
    """The app whose realm a name lives in: ``app`` when given, else the app whose code is
    running (the one loading, or the handler's, daemon's or schedule's), else "main"."""
    if app is not None:
        return str(app)
    import _push_runtime
    return _push_runtime.current_app()


def app():
    """The name of the app whose code is running ("main" in the REPL and in lambdas)."""
    return _realm(None)


def secret(name):
    """The value of this app's secret ``name`` (set with ``push secret set APP NAME``, value
    from stdin). Raises KeyError when the app has no such secret. Every call reads the
    cluster's current value, so a change reaches running code without a deploy: the next
    read sees it. Log records and tracebacks on this node show "[secret]" in place of a
    value read here; still, keep it out of responses and messages."""
    value = _native.secret_get(_realm(None), str(name))
    if value is None:
        raise KeyError(f"app {_realm(None)!r} has no secret {name!r}; set it with `push secret set {_realm(None)} {name}` (value on stdin)")
    import _push_runtime
    _push_runtime.remember_secret(value)
    return value


def config(key, default=None):
    """The value (a str) of this app's config entry ``key`` (``push config set APP KEY
    VALUE``), or ``default`` when unset. Every call reads the cluster's current value, so
    a change reaches running code without a deploy: the next read sees it."""
    return _native.config_get(_realm(None), str(key), default)


def _where(where):
    """Normalise a placement constraint: None, "tag", ["tag", ...] or a dict with
    tags/gpu/cores/memory_mb."""
    if where is None:
        return {}
    if isinstance(where, str):
        return {"tags": [where]}
    if isinstance(where, (list, tuple)):
        return {"tags": [str(t) for t in where]}
    if isinstance(where, dict):
        known = {"tags", "gpu", "cores", "memory_mb"}
        unknown = set(where) - known
        if unknown:
            raise ValueError(f"where= knows {sorted(known)}, not {sorted(unknown)}")
        out = dict(where)
        if "tags" in out:
            out["tags"] = [out["tags"]] if isinstance(out["tags"], str) else [str(t) for t in out["tags"]]
        return out
    raise TypeError("where= is a tag, a list of tags or a dict like {'gpu': True, 'cores': 4}")


def _on(on):
    if on in ("any", "all"):
        return on
    if isinstance(on, int) and not isinstance(on, bool):
        return on
    raise ValueError(f"on= is 'any', 'all' or a node id, not {on!r}")


def daemon(fn=None, *, name=None, on="any", replicas=1, where=None):
    """Decorator: keep ``fn(ctx)`` running somewhere in the cluster.

    ``on="any"`` runs ``replicas`` copies on different nodes, ``on="all"`` one on every node,
    ``on=3`` on node 3 only; ``where`` keeps it to nodes with a tag (``where="gpu"``) or
    capabilities (``where={"gpu": True, "cores": 8, "memory_mb": 4096, "tags": [...]}``).
    When a node dies its daemons move within seconds. A deploy restarts only daemons whose
    code changed: ``ctx.stopping`` is set, then after 5 s the daemon is interrupted. A crash
    is logged (``push tail NAME``) and the daemon restarts with backoff (1 s doubling to 30 s).

        @push.daemon(replicas=2)
        def worker(ctx):
            jobs = push.queue("jobs")
            while not ctx.stopping.is_set():
                item = jobs.take(timeout=1)
                if item:
                    ctx.log.info("got %r", item.value)
                    item.ack()
    """
    def register(fn):
        spec = {
            "kind": "daemon", "name": name or fn.__name__, "on": _on(on),
            "replicas": max(1, int(replicas)), "where": _where(where),
        }
        import _push_runtime
        _push_runtime.register_task(spec, fn)
        return fn
    return register(fn) if fn is not None else register


def every(period, *, name=None, on="any", where=None):
    """Decorator: call ``fn()`` (or ``fn(ctx)``) every ``period`` ("5s", "1m", seconds).

    Each firing runs once in the whole cluster, on one live node (``on="all"``: on every
    node). Periods are aligned to the clock (every 5 s fires at :00, :05, ...); a period
    missed while no leader was elected is skipped, not replayed.
    """
    ms = _duration_ms(period, "period")

    def register(fn):
        spec = {"kind": "schedule", "name": name or fn.__name__, "every_ms": ms,
                "on": _on(on), "where": _where(where), "replicas": 1}
        import _push_runtime
        _push_runtime.register_task(spec, fn)
        return fn
    return register


def cron(spec, *, name=None, on="any", where=None):
    """Decorator: call ``fn()`` at times matching a 5-field cron spec (UTC), e.g.
    ``"*/5 * * * *"`` (every 5 minutes) or ``"0 3 * * mon-fri"`` (03:00 on weekdays).
    Fields: minute hour day-of-month month day-of-week; ``*``, ``a-b``, ``*/n``, lists, and
    names for months (``jan``) and weekdays (``mon``). As in Vixie cron, when neither day
    field starts with ``*`` a day matching either one fires. A time missed while no leader
    was elected is skipped, not replayed; a spec that can never fire (``"0 0 30 2 *"``)
    never does, and the leader logs why."""
    def register(fn):
        s = {"kind": "schedule", "name": name or fn.__name__, "cron": str(spec),
             "on": _on(on), "where": _where(where), "replicas": 1}
        import _push_runtime
        _push_runtime.register_task(s, fn)
        return fn
    return register


def run(fn, *args, on="any", timeout=60.0):
    """Run ``fn(*args)`` elsewhere in the cluster and return its result.

    ``fn`` is a function (module-level in the app, or defined in the REPL without closures)
    or a ``"module:function"`` path into the app at HEAD. ``on`` is ``"any"`` (one live node),
    ``"all"`` (every live node: returns ``{node_id: result}``), a node id, or ``"tag:NAME"``
    (every live node with that tag: a dict too). Arguments and results are plain data.
    Raises ``push.RemoteError`` when the function raised on any node.
    """
    import _push_runtime
    if isinstance(fn, str):
        func = ("path", fn, None, None)
    elif callable(fn) and hasattr(fn, "__code__"):
        if fn.__code__.co_freevars:
            raise TypeError(
                f"push.run cannot ship {fn.__name__!r}: it closes over "
                f"{', '.join(fn.__code__.co_freevars)}; pass those values as arguments")
        module = getattr(fn, "__module__", None)
        func = ("code", _push_runtime.pack_code(fn.__code__), fn.__name__, module)
    else:
        raise TypeError("push.run needs a function or a 'module:function' path")
    if isinstance(on, str) and on.startswith("tag:"):
        target, many = ("tag", on[4:]), True
    elif on in ("any", "all"):
        target, many = (on, None), on == "all"
    elif isinstance(on, int) and not isinstance(on, bool):
        target, many = ("node", on), False
    else:
        raise ValueError(f"on= is 'any', 'all', a node id or 'tag:NAME', not {on!r}")
    results = _native.run(func, list(args), target, float(timeout))
    errors = {n: e for n, (ok, e) in results.items() if not ok}
    values = {n: v for n, (ok, v) in results.items()}
    if errors:
        detail = "\n".join(f"node {n}: {e}" for n, e in sorted(errors.items()))
        raise RemoteError(f"push.run failed on {len(errors)} node(s):\n{detail}", values, errors)
    if many:
        return values
    return next(iter(values.values())) if values else None


class Node:
    """This node: ``id``, ``addr`` and ``role`` ("leader", "follower", ...)."""

    @property
    def id(self):
        return _native.node_info()["id"]

    @property
    def addr(self):
        return _native.node_info()["addr"]

    @property
    def role(self):
        return _native.node_info()["role"]

    def __repr__(self):
        info = _native.node_info()
        return f"<push.node {info['id']} {info['addr']} {info['role']}>"


class Cluster:
    """The cluster: ``leader`` (node id or None) and ``nodes()`` (list of dicts)."""

    @property
    def leader(self):
        return _native.node_info()["leader"]

    def nodes(self):
        """Every registered node: id, addr, http, alive, cores, memory_mb, gpu, tags, voter."""
        return _native.nodes()

    def members(self):
        """Raft membership: id, addr, voter."""
        return _native.members()

    def __repr__(self):
        return f"<push.cluster of {len(self.nodes())} nodes, leader {self.leader}>"


_node = Node()
_cluster = Cluster()


def __getattr__(name):
    if name == "version":
        import _push_runtime
        return _push_runtime.current_version()
    if name == "node":
        return _node
    if name == "cluster":
        return _cluster
    raise AttributeError(f"module 'push' has no attribute {name!r}")
