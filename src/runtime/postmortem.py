"""Failures kept on this worker for post-mortem, and call tracing.

Every unhandled exception of a handler (WSGI/ASGI apps too), daemon, schedule or lambda is
kept here with where it came from (the recorded request or call), its time and its traceback
with the live frames, so ``:pm`` can show the frames' locals, evaluate in them and replay
the request against the code as it is now. Kept failures are bounded in count, bytes and age;
a dropped one's frames are cleared so their locals are freed.

``trace`` wraps one function in its module (and in the route table and task specs that hold
it) for a bounded number of calls or seconds, then puts the original back: a function that is
not traced runs untouched. The node calls the functions at the bottom with JSON requests.
"""

import collections
import functools
import itertools
import linecache
import sys
import threading
import time
import traceback

import _push_runtime

MAX_FAILURES = 50
MAX_BYTES = 4 << 20
EXPIRY = 3600.0
BODY_CAP = 64 << 10
REPR_CAP = 300
_HIDDEN = ("authorization", "cookie", "proxy-authorization", "x-api-key")
TRACE_REPR_CAP = 120

_lock = threading.Lock()
_kept = collections.OrderedDict()  # seq -> Failure, oldest first
_seq = itertools.count(1)
_bytes = 0
_local = threading.local()  # .last: the number of the failure this thread kept last


class Failure:
    __slots__ = ("seq", "app", "version", "origin", "request", "call", "at", "exc", "frames",
                 "error", "text", "size", "scratch")

    def __init__(self, seq, app, version, origin, exc, request, call):
        self.seq, self.app, self.version, self.origin = seq, app, version, origin
        self.request, self.call, self.exc = request, call, exc
        self.at = time.time()
        self.frames = _app_frames(exc.__traceback__)  # innermost first
        self.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.text = _push_runtime.format_exception(exc)
        body = len(request["body"]) if request else 0
        self.size = len(self.text) + body + 512
        self.scratch = {}  # frame index -> the locals copy evaluations use


def _app_frames(tb):
    frames = []
    while tb is not None:
        f = tb.tb_frame
        name = f.f_code.co_filename
        if not name.startswith(("<push>", "<frozen")) and "importlib" not in name:
            frames.append((f, tb.tb_lineno))
        tb = tb.tb_next
    frames.reverse()
    return frames


def _release(failure):
    if failure.exc.__traceback__ is not None:
        traceback.clear_frames(failure.exc.__traceback__)
    failure.frames = []
    failure.scratch = {}
    failure.exc.__traceback__ = None


def _trim(now):
    global _bytes
    while _kept:
        seq, oldest = next(iter(_kept.items()))
        if len(_kept) > MAX_FAILURES or _bytes > MAX_BYTES or now - oldest.at > EXPIRY:
            del _kept[seq]
            _bytes -= oldest.size
            _release(oldest)
        else:
            break


def keep(exc, app, version, origin, request=None, call=None):
    """Keep an unhandled exception; returns its number on this worker. Never raises."""
    global _bytes
    try:
        if request is not None and len(request.get("body") or b"") > BODY_CAP:
            request = dict(request, body=request["body"][:BODY_CAP], cut=True)
        failure = Failure(next(_seq), app or "main", version, origin, exc, request, call)
        with _lock:
            _kept[failure.seq] = failure
            _bytes += failure.size
            _trim(time.time())
        _local.last = failure.seq
        return failure.seq
    except Exception:  # noqa: BLE001 - keeping a failure must never fail the request
        return None


def _get(seq, scope):
    with _lock:
        _trim(time.time())
        failure = _kept.get(seq)
    if failure is None:
        first = next(iter(_kept), None)
        why = (f"kept failures here start at number {first}" if first else "no failures are kept here now")
        raise LookupError(f"no failure {{id}} on this worker: it expired or was dropped "
                          f"(a worker keeps its last {MAX_FAILURES} for {int(EXPIRY // 60)} minutes; {why}); "
                          "`push errors` lists the kept ones")
    if scope and failure.app not in scope:
        raise PermissionError(f"failure {{id}} is not one of your apps' failures (you may see {', '.join(scope)})")
    return failure


def _place(failure):
    if not failure.frames:
        return ""
    f, line = failure.frames[0]
    return f"{f.f_code.co_filename}:{line}"


def _row(failure):
    return {"seq": failure.seq, "app": failure.app, "version": failure.version,
            "origin": failure.origin, "at_ms": int(failure.at * 1000), "error": failure.error,
            "place": _place(failure)}


def _frame(failure, index):
    if not 0 <= index < len(failure.frames):
        raise IndexError(f"failure {{id}} has frames 0 to {len(failure.frames) - 1}, not {index}; `:pm {{id}}` lists them")
    return failure.frames[index]


def _describe_request(failure):
    r = failure.request
    if r is not None:
        query = f"?{r['query_string']}" if r.get("query_string") else ""
        lines = [f"{r['method']} {r['path']}{query}"]
        lines += [f"{k}: {'[hidden]' if k.lower() in _HIDDEN else v}" for k, v in r["headers"]]
        body = bytes(r["body"] or b"")
        if body:
            text = body[:2000].decode("utf-8", "replace")
            lines.append("")
            lines.append(text + (" ..." if len(body) > 2000 or r.get("cut") else ""))
        return _push_runtime.redact("\n".join(lines))
    if failure.call is not None:
        args = ", ".join(_capped(a, TRACE_REPR_CAP) for a in failure.call["args"])
        return _push_runtime.redact(f"{failure.call['label']}({args})")
    return None


def _capped(value, cap):
    try:
        text = repr(value)
    except BaseException as exc:  # noqa: BLE001
        text = f"<repr failed: {type(exc).__name__}: {exc}>"
    return _cut(text, cap)


def _cut(text, cap):
    """``text`` cut to ``cap`` characters, saying how many more there were."""
    if len(text) > cap:
        text = text[:cap] + f"... ({len(text) - cap} more characters)"
    return text


def _open(failure):
    frames = []
    for i, (f, line) in enumerate(failure.frames):
        code = linecache.getline(f.f_code.co_filename, line, f.f_globals).strip()
        frames.append({"index": i, "file": f.f_code.co_filename, "line": line,
                       "function": f.f_code.co_name, "code": code})
    return {"row": _row(failure), "request": _describe_request(failure),
            "traceback": failure.text, "frames": frames,
            "replayable": failure.request is not None or (failure.call or {}).get("fn") is not None}


def _locals(failure, index):
    f, _ = _frame(failure, index)
    names = failure.scratch.get(index) or dict(f.f_locals)
    return [[k, _push_runtime.redact(_capped(v, REPR_CAP))] for k, v in names.items()]


def _source(failure, index):
    import inspect
    f, line = _frame(failure, index)
    try:
        lines, first = inspect.getsourcelines(f.f_code)
        text = "".join(f"{'>' if first + i == line else ' '}{first + i:5} {l}" for i, l in enumerate(lines))
    except (OSError, TypeError):
        first, text = line, linecache.getline(f.f_code.co_filename, line, f.f_globals)
    return {"file": f.f_code.co_filename, "line": first, "text": text.rstrip()}


def namespace(seq, index, scope):
    """(globals, locals copy) for an evaluation in frame ``index`` of failure ``seq``."""
    failure = _get(seq, scope)
    f, _ = _frame(failure, index)
    scratch = failure.scratch.get(index)
    if scratch is None:
        scratch = failure.scratch[index] = dict(f.f_locals)
    return f.f_globals, scratch


class _Capture:
    """Where a replayed WSGI/ASGI request's answer goes (in place of the client's socket)."""

    def __init__(self):
        self.status, self.headers, self.body = None, [], []
        self.disconnected = False

    def head(self, status, headers, version):
        self.status, self.headers = status, headers

    def send(self, data):
        self.body.append(bytes(data))
        return True

    def read(self, timeout):
        time.sleep(min(timeout, 0.05))
        return (0, None)

    def wake(self):
        pass


def _replay(failure):
    _local.last = None
    r = failure.request
    if r is not None:
        capture = _Capture()
        status, _headers, body, version, log, streamed = _push_runtime.handle_http(
            failure.app, None, r["method"], r["path"], dict(r["query"]),
            dict(r["headers"]), bytes(r["body"] or b""), None, capture,
            (False, r.get("query_string", ""), r.get("client", ""), r.get("server", "")))
        if streamed:
            status = capture.status or status
            body = b"".join(capture.body)
        again = getattr(_local, "last", None)
        ok = log is None and again is None
        text = bytes(body[:500]).decode("utf-8", "replace").strip()
        summary = f"{r['method']} {r['path']} answered {status} on v{version}" + (f": {text}" if text else "")
        if log:
            summary += " (" + log.strip().splitlines()[-1] + ")"
        return {"ok": ok, "summary": summary, "failure": again}
    call = failure.call or {}
    fn = call.get("fn")
    if fn is None:
        raise ValueError(f"failure {{id}} came from {failure.origin}, which cannot be replayed (only requests and lambda calls can)")
    if call.get("path"):
        import _push_tasks
        fn = _push_tasks._resolve(call["path"])  # the code as it is now
    try:
        value = fn(*call["args"])
    except BaseException as exc:  # noqa: BLE001 - a replay's failure is kept like the original
        seq = keep(exc, failure.app, _push_runtime.serving(failure.app), failure.origin, call=call)
        return {"ok": False, "summary": f"{call['label']} raised {type(exc).__name__}: {exc}", "failure": seq}
    return {"ok": True, "summary": f"{call['label']} returned {_capped(value, REPR_CAP)}", "failure": None}


# -- call tracing -------------------------------------------------------------------------

_traces = []  # the running traces' stop events


def _resolve_target(target):
    """(holder, attribute name, function, module name) for ``module.function`` or
    ``module.Class.method``; the longest loaded module prefix wins."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None:
            continue
        holder = module
        for part in parts[cut:-1]:
            holder = getattr(holder, part, None)
            if holder is None:
                raise LookupError(f"{module_name} has no {part!r}; `:trace MODULE.FUNC` names a function of a loaded module")
        fn = getattr(holder, parts[-1], None)
        if fn is None or not callable(fn):
            raise LookupError(f"{module_name} has no function {parts[-1]!r}; `:trace MODULE.FUNC` names a function of a loaded module")
        return holder, parts[-1], fn, module_name
    raise LookupError(f"no loaded module in {target!r}; `:trace MODULE.FUNC`, e.g. `:trace app.square`")


def _app_of(module_name):
    for app, state in list(_push_runtime._apps.items()):
        head = state["head"]
        if head is not None and module_name in head.modules:
            return app
    return None


def trace(target, max_events, secs, scope, sink, label):
    """Trace calls of ``target`` for up to ``max_events`` calls or ``secs`` seconds; each call
    goes to ``sink`` as a line. Returns JSON {"events", "why"}."""
    import json
    holder, name, original, module_name = _resolve_target(target)
    app = _app_of(module_name)
    if scope and app not in scope:
        raise PermissionError(f"{module_name} is not a module of your apps ({', '.join(scope)})")
    module = sys.modules.get(module_name)
    stop = threading.Event()
    count = itertools.count(1)
    seen = [0]

    @functools.wraps(original)
    def traced(*args, **kwargs):
        started = time.perf_counter()
        try:
            value = original(*args, **kwargs)
        except BaseException as exc:
            outcome = f"raised {type(exc).__name__}: {_cut(str(exc), TRACE_REPR_CAP)}"
            _emit(started, args, kwargs, outcome)
            raise
        _emit(started, args, kwargs, f"-> {_capped(value, TRACE_REPR_CAP)}")
        return value

    def _emit(started, args, kwargs, outcome):
        micros = (time.perf_counter() - started) * 1e6
        n = next(count)
        if n > max_events or stop.is_set():
            return
        seen[0] = n
        shown = [_capped(a, TRACE_REPR_CAP) for a in args]
        shown += [f"{k}={_capped(v, TRACE_REPR_CAP)}" for k, v in kwargs.items()]
        at = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        sink.write(0, _push_runtime.redact(f"{at} {label} {target}({', '.join(shown)}) {outcome} in {micros:.0f} µs\n"))
        if n >= max_events:
            stop.set()

    traced.__push_traced__ = original
    swapped = _swap(holder, name, original, traced, app)
    _traces.append(stop)
    why = f"{secs} s passed"
    deadline = time.monotonic() + secs
    try:
        while not stop.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            if sys.modules.get(module_name) is not module:
                why = "a new version of the module loaded"
                break
            if getattr(holder, name, None) is not traced:
                why = f"{target} was redefined (a hot-patch)"
                break
        else:
            why = "untraced" if seen[0] < max_events else f"{max_events} events printed"
    finally:
        stop.set()
        _traces.remove(stop)
        _unswap(holder, name, original, traced, swapped)
    return json.dumps({"events": seen[0], "why": why})


def _swap(holder, name, original, traced, app):
    """Put ``traced`` where ``original`` is called from: its module attribute, the HEAD
    version's routes and task specs. Returns the routes and specs swapped."""
    setattr(holder, name, traced)
    swapped = []
    state = _push_runtime._apps.get(app) if app else None
    head = state["head"] if state else None
    if head is not None:
        routes = [r for rs in head.routes.fixed.values() for r in rs] + list(head.routes.patterns)
        for route in routes:
            if getattr(route, "fn", None) is original:
                route.fn = traced
                swapped.append(route)
        for spec in head.tasks.values():
            if spec.get("fn") is original:
                spec["fn"] = traced
                swapped.append(spec)
    return swapped


def _unswap(holder, name, original, traced, swapped):
    if getattr(holder, name, None) is traced:
        setattr(holder, name, original)
    for thing in swapped:
        if isinstance(thing, dict):
            if thing.get("fn") is traced:
                thing["fn"] = original
        elif thing.fn is traced:
            thing.fn = original


def untrace():
    """Stop every trace running on this worker; returns how many."""
    stopping = list(_traces)
    for stop in stopping:
        stop.set()
    return len(stopping)


# -- the node's requests ------------------------------------------------------------------

def request(text):
    """Answer one JSON request from the node; returns JSON: {"ok": ...} or {"error": ...}."""
    import json
    req = json.loads(text)
    what, scope = req["do"], req.get("scope") or []
    try:
        if what == "list":
            with _lock:
                _trim(time.time())
                rows = [_row(f) for f in reversed(_kept.values()) if not scope or f.app in scope]
            return json.dumps({"ok": rows})
        if what == "untrace":
            return json.dumps({"ok": untrace()})
        failure = _get(req["seq"], scope)
        if what == "open":
            answer = _open(failure)
        elif what == "locals":
            answer = _locals(failure, req["frame"])
        elif what == "source":
            answer = _source(failure, req["frame"])
        elif what == "replay":
            answer = _replay(failure)
        else:
            raise ValueError(f"unknown post-mortem request {what!r}")
        return json.dumps({"ok": answer})
    except (LookupError, IndexError, PermissionError, ValueError) as exc:
        return json.dumps({"error": str(exc), "kind": type(exc).__name__})
