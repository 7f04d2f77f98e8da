"""Serving Python web apps in a worker: WSGI (PEP 3333) and ASGI 3.0 callables named in
``push.ron``, and streamed answers of ``@push.route`` handlers.

Each request arrives on a pool thread with an ``exchange`` (Rust): ``read(timeout)`` gives
the rest of the request body and the client's disconnect, ``head(...)`` and ``send(data)``
put the answer on the socket at once. ASGI apps run on one asyncio loop per worker (a
thread of its own); their lifespan starts when a version loads here and ends when it is
dropped or the worker stops.
"""

import os
import sys
import threading
import time
from urllib.parse import unquote, unquote_to_bytes

TIMEOUT, CHUNK, END, DISCONNECT = 0, 1, 2, 3

# Longest an ASGI app may keep running after its client went away before it is cancelled.
AFTER_DISCONNECT = 10.0
# Longest a lifespan startup or shutdown may take.
LIFESPAN_TIMEOUT = 30.0


# -- secrets and config in the environment -------------------------------------------------
# A WSGI/ASGI app runs in a pool of its own (the node names the app in PUSH_POOL_APP), so its
# secrets and config (`push secret set`, `push config set`) can be environment variables
# there: os.environ from version load on, refreshed at most every ENV_FRESH seconds by its
# requests, and each WSGI request's environ. Workers of the node's main pool never get them.

_POOL_APP = os.environ.get("PUSH_POOL_APP")
ENV_FRESH = 1.0
_env_lock = threading.Lock()
_env = {"app": None, "values": {}, "at": 0.0, "set": set()}


def app_environ(app, force=False, scratch=False):
    """``app``'s secrets and config as environment variables (config first, a secret of the
    same name wins), also set in ``os.environ`` when this worker is in the app's own pool
    (``scratch``: a deploy gate's throwaway worker). Empty elsewhere."""
    if app != _POOL_APP and not scratch:
        return {}
    now = time.monotonic()
    with _env_lock:
        fresh = _env["app"] == app and now - _env["at"] < ENV_FRESH
        if fresh and not force:
            return _env["values"]
    import _push_native
    import _push_runtime
    try:
        names, config = _push_native.settings_of(app)
        values = dict(config)
        for name in names:
            value = _push_native.secret_get(app, name)
            if value is not None:
                _push_runtime.remember_secret(value)
                values[name] = value
    except Exception as exc:  # noqa: BLE001 - no leader yet: keep what the app has
        import logging
        logging.getLogger("push").warning(
            "cannot read the secrets and config of %s for its environment (keeping the previous ones): %s",
            app, _push_runtime.redact(str(exc)))
        with _env_lock:
            _env["at"] = now
            return dict(_env["values"]) if _env["app"] == app else {}
    with _env_lock:
        for name in _env["set"] - set(values):
            os.environ.pop(name, None)
        for name, value in values.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        _env.update(app=app, values=values, at=now, set=set(values))
    return values


class ClientDisconnected(OSError):
    """The client went away while the app was answering."""


def rest_of_body(exchange, first, more):
    """The whole request body: ``first`` plus what the node still sends."""
    if not more:
        return first
    parts = [first]
    while True:
        kind, data = exchange.read(1.0)
        if kind == CHUNK:
            parts.append(data)
        elif kind == END:
            return b"".join(parts)
        elif kind == DISCONNECT:
            raise ClientDisconnected("the client went away while sending the request body")


def _split(addr):
    host, _, port = addr.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return addr, 0


def _text(chunk):
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


def stream(exchange, status, headers, chunks, version):
    """Send a ``@push.route`` handler's iterator as a streamed answer, chunk by chunk.
    Returns the traceback text if it raised midway, else None."""
    exchange.head(status, list(headers.items()), version)
    try:
        for chunk in chunks:
            if not exchange.send(_text(chunk)):
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


# -- WSGI ----------------------------------------------------------------------------------

class _Input:
    """``wsgi.input``: the request body as the node streams it in."""

    def __init__(self, exchange, first, more):
        self._exchange = exchange
        self._buffer = bytearray(first)
        self._more = more

    def _fill(self):
        kind, data = self._exchange.read(1.0)
        while kind == TIMEOUT:
            kind, data = self._exchange.read(1.0)
        if kind == CHUNK:
            self._buffer += data
        elif kind == END:
            self._more = False
        else:
            raise ClientDisconnected("the client went away while sending the request body")

    def read(self, size=-1):
        if size is None or size < 0:
            while self._more:
                self._fill()
            size = len(self._buffer)
        while self._more and len(self._buffer) < size:
            self._fill()
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readline(self, size=-1):
        while self._more and b"\n" not in self._buffer and (size is None or size < 0 or len(self._buffer) < size):
            self._fill()
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if size is not None and size >= 0:
            end = min(end, size)
        out = bytes(self._buffer[:end])
        del self._buffer[:end]
        return out

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


def environ(method, path, query_string, headers, client, server, exchange, first, more, app_env=None):
    host, port = _split(server)
    remote, remote_port = _split(client)
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query_string,
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote,
        "REMOTE_PORT": str(remote_port),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": _Input(exchange, first, more),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            env[key] = value
        else:
            env["HTTP_" + key] = value
    for name, value in (app_env or {}).items():
        env.setdefault(name, value)
    return env


def serve_wsgi(app, env, exchange, version):
    """Run a WSGI app for one request, streaming its answer. Returns the traceback-free
    outcome: None when the answer went out, or raises before anything was sent."""
    head = {}

    def start_response(status, response_headers, exc_info=None):
        if exc_info is not None:
            try:
                if head.get("sent"):
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif "status" in head:
            raise AssertionError("start_response was called twice without exc_info")
        head["status"] = int(str(status).split(" ", 1)[0])
        head["headers"] = [(str(k), str(v)) for k, v in response_headers]
        return write

    def send_head():
        if not head.get("sent"):
            if "status" not in head:
                raise AssertionError("the WSGI app sent body before calling start_response")
            exchange.head(head["status"], head["headers"], version)
            head["sent"] = True

    def write(data):
        send_head()
        if not exchange.send(data):
            raise ClientDisconnected("the client went away")

    result = app(env, start_response)
    try:
        for chunk in result:
            if chunk:
                send_head()
                if not exchange.send(chunk):
                    break  # the client went away: close() below tells the app
        send_head()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return head.get("sent", False)


# -- ASGI ----------------------------------------------------------------------------------

class _Asyncio:
    """asyncio, imported when an ASGI app first needs it: with the ssl it loads, it costs an
    idle worker about 8 MB."""

    def __getattr__(self, name):
        import asyncio as module
        return getattr(module, name)


asyncio = _Asyncio()

_loop = None
_loop_lock = threading.Lock()


def loop():
    """This worker's asyncio loop for ASGI apps, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None:
            new = asyncio.new_event_loop()
            threading.Thread(target=new.run_forever, name="push-asgi", daemon=True).start()
            _loop = new
        return _loop


def _resolve(future):
    def set_result(value):
        if not future.done():
            future.set_result(value)
    return set_result


class Lifespan:
    """An ASGI app's lifespan in this worker: startup when its version loads, shutdown when
    the version is dropped. An app that does not speak lifespan is served without one."""

    def __init__(self, app):
        self.app = app
        self.state = {}
        self.supported = True
        self.started = False

    async def _begin(self):
        self.inbox = asyncio.Queue()
        running = asyncio.get_running_loop()
        self.startup = running.create_future()
        self.shutdown = running.create_future()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}

        async def receive():
            return await self.inbox.get()

        async def send(message):
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                _resolve(self.startup)(None)
            elif kind == "lifespan.startup.failed":
                _resolve(self.startup)(message.get("message") or "lifespan startup failed")
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                _resolve(self.shutdown)(message.get("message"))

        async def run():
            try:
                await self.app(scope, receive, send)
            except BaseException as exc:  # noqa: BLE001 - an app without lifespan raises here
                if not self.startup.done():
                    self.supported = False
                    _resolve(self.startup)(None)
                import _push_runtime
                _resolve(self.shutdown)(_push_runtime.format_exception(exc))
            _resolve(self.startup)(None)
            _resolve(self.shutdown)(None)

        self.task = asyncio.get_running_loop().create_task(run())
        self.inbox.put_nowait({"type": "lifespan.startup"})
        return await self.startup

    def start(self):
        """Runs the startup; returns an error text or None."""
        future = asyncio.run_coroutine_threadsafe(self._begin(), loop())
        failed = future.result(LIFESPAN_TIMEOUT)
        self.started = failed is None
        return failed

    async def _end(self):
        self.inbox.put_nowait({"type": "lifespan.shutdown"})
        return await self.shutdown

    def stop(self):
        if not (self.started and self.supported):
            return None
        self.started = False
        future = asyncio.run_coroutine_threadsafe(self._end(), loop())
        try:
            return future.result(LIFESPAN_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a shutdown that hangs is reported, not fatal
            return f"lifespan shutdown did not finish: {exc!r}"


def scope(method, path, query_string, headers, client, server, state):
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": query_string.encode("latin-1", "replace"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers.items()],
        "client": _split(client),
        "server": _split(server),
        "state": dict(state),
    }


def serve_asgi(app, http_scope, exchange, first, more, version):
    """Run an ASGI app for one request on the worker's loop; this thread feeds it the body
    and the client's disconnect. Returns whether the answer's head went out."""
    running = loop()
    inbox = asyncio.Queue()
    head = {}

    async def receive():
        message = await inbox.get()
        if message["type"] == "http.disconnect":
            inbox.put_nowait(message)  # every later receive() says so too
        return message

    async def send(message):
        kind = message["type"]
        if exchange.disconnected:
            raise ClientDisconnected("the client went away")
        if kind == "http.response.start":
            if "status" in head:
                raise RuntimeError("http.response.start was sent twice")
            head["status"] = int(message["status"])
            head["headers"] = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]
        elif kind == "http.response.body":
            if "status" not in head:
                raise RuntimeError("http.response.body was sent before http.response.start")
            if not head.get("sent"):
                exchange.head(head["status"], head["headers"], version)
                head["sent"] = True
            body = message.get("body", b"")
            # Backpressure: wait off the loop while the node has a window of this answer
            # on its way to a slow client, so other requests on the loop keep running.
            while body and not exchange.wait_room(len(body), 0):
                if exchange.disconnected:
                    raise ClientDisconnected("the client went away")
                await asyncio.get_running_loop().run_in_executor(None, exchange.wait_room, len(body), 1.0)
            if body and not exchange.send(body):
                raise ClientDisconnected("the client went away")

    def put(message):
        running.call_soon_threadsafe(inbox.put_nowait, message)

    put({"type": "http.request", "body": first, "more_body": more})
    future = asyncio.run_coroutine_threadsafe(app(http_scope, receive, send), running)
    future.add_done_callback(lambda _: exchange.wake())
    try:
        gone_at = None
        while not future.done():
            kind, data = exchange.read(0.5)
            if kind == CHUNK:
                put({"type": "http.request", "body": data, "more_body": True})
            elif kind == END:
                put({"type": "http.request", "body": b"", "more_body": False})
            elif kind == DISCONNECT and gone_at is None:
                put({"type": "http.disconnect"})
                gone_at = running.time()
            elif gone_at is not None and running.time() - gone_at > AFTER_DISCONNECT:
                future.cancel()
                break
        if not future.cancelled():
            future.result()
    except BaseException:
        future.cancel()
        raise
    if "status" in head and not head.get("sent"):
        exchange.head(head["status"], head["headers"], version)
        head["sent"] = True
    return head.get("sent", False)
