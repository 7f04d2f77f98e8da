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

Attributes computed on access:
    push.version  the version of the app whose code is running (HEAD unless pinned)
    push.node     this node: id, addr, role
    push.cluster  the cluster: leader, nodes()
"""

import _push_native as _native

__all__ = ["kv", "queue", "route", "Response", "version", "node", "cluster"]


class KV:
    """A replicated dict, named and shared by every node. Get one with ``push.kv(name)``.

    Reads are linearizable (they see every write acknowledged before them); ``get(key,
    stale=True)`` reads this node's copy without asking the leader. Writes return once a
    majority has durably stored them.
    """

    def __init__(self, name):
        self.name = str(name)

    def get(self, key, default=None, *, stale=False):
        """The value of ``key``, or ``default`` when it is absent."""
        found, value = _native.kv_get(self.name, str(key), stale)
        return value if found else default

    def __getitem__(self, key):
        found, value = _native.kv_get(self.name, str(key), False)
        if not found:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        _native.kv_set(self.name, str(key), value)

    def set(self, key, value):
        """Store ``value`` under ``key`` (durable when this returns)."""
        _native.kv_set(self.name, str(key), value)

    def __delitem__(self, key):
        if not _native.kv_delete(self.name, str(key)):
            raise KeyError(key)

    def delete(self, key):
        """Remove ``key``; returns whether it existed."""
        return _native.kv_delete(self.name, str(key))

    def cas(self, key, expected, new):
        """Set ``key`` to ``new`` only if it currently equals ``expected``.

        ``expected=None`` means "absent"; ``new=None`` deletes. Returns True if it was set.
        """
        return _native.kv_cas(self.name, str(key), expected, new)

    def keys(self, prefix=""):
        """Keys in order, optionally only those starting with ``prefix``."""
        return _native.kv_keys(self.name, str(prefix))

    def __contains__(self, key):
        return _native.kv_get(self.name, str(key), False)[0]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def items(self):
        """(key, value) pairs; each value read separately."""
        return [(k, self.get(k)) for k in self.keys()]

    def __repr__(self):
        return f"push.kv({self.name!r})"


def kv(name):
    """The replicated dict called ``name`` (created on first write)."""
    return KV(name)


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

    def __init__(self, name):
        self.name = str(name)

    def put(self, value):
        """Append one value; returns its id once a majority has stored it."""
        return _native.queue_put(self.name, [value])[0]

    def put_many(self, values):
        """Append several values in one replicated write; returns their ids."""
        return _native.queue_put(self.name, list(values))

    def take(self, timeout=None, lease=30.0):
        """The next item, leased for ``lease`` seconds; waits up to ``timeout`` seconds
        (None: up to 60 s) for one to arrive. Returns None when none came."""
        wait = 60.0 if timeout is None else float(timeout)
        found = _native.queue_take(self.name, int(lease * 1000), int(wait * 1000))
        return None if found is None else Item(self.name, found[0], found[1], found[2])

    def size(self):
        """Items ready to be taken now."""
        return _native.queue_stats(self.name)[0]

    def leased(self):
        """Items taken and not yet acknowledged (lease still running)."""
        return _native.queue_stats(self.name)[1]

    def peek(self, n=10):
        """The first ``n`` ready values, without taking them."""
        return _native.queue_peek(self.name, int(n))

    def __len__(self):
        return self.size()

    def __repr__(self):
        return f"push.queue({self.name!r})"


def queue(name):
    """The replicated queue called ``name`` (created on first put)."""
    return Queue(name)


def route(method, path):
    """Decorator: serve ``method path`` over HTTP with this function.

    The function may take a ``request`` (method, path, query, headers, body, text, json())
    and returns a str, bytes, a JSON-able dict/list, ``(status, body)``,
    ``(status, body, headers)`` or a ``push.Response``. Use method ``"*"`` for any method.
    """

    def register(fn):
        import _push_runtime
        _push_runtime.register_route(method, path, fn)
        return fn

    return register


class Response:
    """An HTTP response with an explicit status and headers."""

    def __init__(self, body=b"", status=200, headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.body = bytes(body)
        self.status = int(status)
        self.headers = dict(headers or {})

    def __repr__(self):
        return f"<Response {self.status}, {len(self.body)} bytes>"


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
        """Every member: id, addr, voter."""
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
