"""Push's in-interpreter runtime: the import hook, version loading and request dispatch.

Rust calls the functions at the bottom (gate, load, activate, handle_http). App code never
imports this module; it uses ``push``.
"""

import importlib
import importlib.machinery
import importlib.util
import linecache
import marshal
import os
import sys
import threading
import traceback

import _push_files
from _push_logs import _origin, clear_origin, redact, remember_secret, set_origin  # noqa: F401 - the runtime's names
import _push_routes
import _push_web

_lock = threading.RLock()

# The version of this interpreter ("3.12.1"). Nodes of one cluster may run different minor
# versions: deployed code is source, but gate and load errors name the version that failed.
PYTHON = sys.version.split()[0]


class _Finder:
    """A meta path finder (``find_spec``, as ``logs._LoggingHook``). Finds the modules of the version being loaded (its loader serves them), and after
    load the modules an app imports later (``import data`` inside a handler): those of the
    version this thread runs, else of any app's HEAD here."""

    def __init__(self):
        self.loader = None  # the _push_files.VersionLoader of the version being loaded

    def find_spec(self, fullname, path=None, target=None):
        loader = self.loader
        if loader is None:
            loader = _serving_loader(fullname)
        if loader is None:
            return None
        if fullname in loader.modules:
            _label, _source, is_pkg, disk = loader.modules[fullname]
            spec = importlib.machinery.ModuleSpec(fullname, loader, origin=disk, is_package=is_pkg)
            spec.has_location = True
            if is_pkg:
                spec.submodule_search_locations = []
            return spec
        if fullname in loader.packages:
            spec = importlib.machinery.ModuleSpec(fullname, loader, is_package=True)
            spec.submodule_search_locations = []
            return spec
        return None


def _serving_loader(fullname):
    """The loader of a loaded version that has module ``fullname``: the version of the app
    running on this thread (a handler, daemon or lambda of it), else any app's HEAD."""
    app = getattr(_origin, "app", None)
    number = getattr(_origin, "version", None)
    candidates = []
    state = _apps.get(app) if app else None
    if state is not None:
        version = state["versions"].get(number) or state["head"]
        if version is not None:
            candidates.append(version)
    candidates += [s["head"] for s in list(_apps.values()) if s["head"] is not None]
    for version in candidates:
        loader = version.loader
        if loader is not None and (fullname in loader.modules or fullname in loader.packages):
            return loader
    return None


_finder = _Finder()
sys.meta_path.insert(0, _finder)


class Version:
    """One loaded version of an app: its modules and its routes."""

    def __init__(self, app, number, modules, routes, tasks=(), web=None):
        self.app = app
        self.number = number
        self.modules = modules
        self.routes = routes
        self.tasks = {t["name"]: t for t in tasks}  # daemons, schedules, partition handlers
        self.web = web  # None, ("wsgi", callable) or ("asgi", callable)
        self.lifespan = None  # an ASGI app's, once started in this worker
        self.loader = None  # finds its modules first imported after load (at request time)


# app -> {"head": Version or None, "versions": {number: Version}}
_apps = {}
# app -> Event set when the first version of app being loaded in this worker is in place (or
# failed): a request that arrives meanwhile waits for it instead of getting a 503 (a node loads
# a version into its workers side by side, so one may serve while another still imports).
_first_loads = {}
# How long such a request waits, in seconds.
FIRST_LOAD_WAIT = 30
_registry = threading.local()


def _current_routes():
    return getattr(_registry, "routes", None)


def _index(files, label, base):
    modules, packages = {}, set()
    for path, source in files.items():
        if not path.endswith(".py"):
            continue
        parts = path[:-3].split("/")
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        if not parts:
            continue
        name = ".".join(parts)
        filename = f"{label}/{path}"
        modules[name] = (filename, source, is_pkg, os.path.join(base, *path.split("/")))
        for i in range(1, len(parts)):
            packages.add(".".join(parts[:i]))
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return modules, packages - set(modules)


def _error(kind, exc):
    """A short, located description of a failure: file, line, message."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}"
        text = (exc.text or "").rstrip()
        return f"{kind}: {where}: {type(exc).__name__}: {exc.msg}" + (f"\n    {text.strip()}" if text else "")
    frames = _app_frames(exc)
    last = frames[-1] if frames else None
    where = f"{last.filename}, line {last.lineno}: " if last else ""
    return redact(f"{kind}: {where}{type(exc).__name__}: {exc}\n" + format_exception(exc))


def _app_frames(exc):
    """The traceback frames that belong to app code (not Push's or importlib's machinery)."""
    return [
        f for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(("<push>", "<frozen")) and "importlib" not in f.filename
    ]


def format_exception(exc):
    """A traceback showing app frames only, with the deployed file names and source lines."""
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(_app_frames(exc))
    lines += traceback.format_exception_only(type(exc), exc)
    return redact("".join(lines).rstrip())


def _web_app(web, names):
    """The WSGI/ASGI callable ``push.ron`` names, imported from the version being loaded."""
    kind, module_name, attr = web
    if module_name not in names:
        raise ImportError(
            f"push.ron names {kind} app {module_name}:{attr}, but the version has no module {module_name!r}; "
            f"add {module_name.replace('.', '/')}.py or fix the name"
        )
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(
                f"push.ron names {kind} app {module_name}:{attr}, but {module_name} has no {attr!r}; "
                f"name the object your framework creates, like app = Flask(__name__)"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"push.ron names {kind} app {module_name}:{attr}, but it is a {type(obj).__name__}, not a callable")
    return kind, obj


def _load(app, number, files, entry, web=None, scratch=False):
    label = f"{app}@v{number}"
    with _lock:
        base = _push_files.materialize(app, number, files, scratch)
    modules, packages = _index(files, label, base)
    # Every module compiles before any runs (a syntax error anywhere fails the load); the
    # import below runs this code rather than compiling it again.
    compiled = {
        name: compile(source, filename, "exec", dont_inherit=True)
        for name, (filename, source, _, _) in modules.items()
    }
    if web and web[1] not in modules:
        _web_app(web, set(modules) | packages)  # raises, naming push.ron's app
    if entry not in modules:
        names = sorted(p for p in files if not p.startswith(_push_files.LINK))
        listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise ImportError(
            f"there is no entry module {entry!r} (files: {listed}); "
            f"add {entry.replace('.', '/')}.py or name the entry in push.ron, e.g. (entry: \"main\")"
        )
    names = set(modules) | packages
    tops = {n.split(".")[0] for n in names}
    with _lock:
        saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] in tops}
        _finder.loader = _push_files.VersionLoader(modules, packages, base, compiled=compiled)
        _registry.routes = []
        _registry.tasks = []
        _registry.version = number
        _registry.app = app
        loaded = {}
        try:
            importlib.import_module(entry)
            web_app = _web_app(web, names) if web else None
            loaded = {n: m for n, m in sys.modules.items() if n in names}
            routes = _push_routes.Table(_registry.routes)
            tasks = list(_registry.tasks)
        finally:
            _registry.routes = None
            _registry.tasks = None
            _registry.version = None
            _registry.app = None
            for n in list(sys.modules):
                if n.split(".")[0] in tops:
                    del sys.modules[n]
            sys.modules.update(saved)
            _finder.loader = None
            importlib.invalidate_caches()
    version = Version(app, number, loaded, routes, tasks, web_app)
    if not scratch:
        version.loader = _push_files.VersionLoader(modules, packages, base, version.modules)
    return version


def gate(app, number, files, entry, web=None):
    """Compile every module and import the entry in a scratch namespace. Returns None or an error."""
    try:
        if web:
            _push_web.app_environ(app, force=True, scratch=True)
        _load(app, number, files, entry, web, scratch=True)
        return None
    except SyntaxError as exc:
        return _error(f"syntax error on Python {PYTHON}", exc)
    except BaseException as exc:  # noqa: BLE001 - any failure of app code is reported
        return _error(f"importing {entry!r} failed on Python {PYTHON}", exc)
    finally:
        _push_files.remove(os.path.join(_push_files.root(), "gate-" + app))


def _start_lifespan(version):
    """Start an ASGI version's lifespan in this worker. Returns None or an error message."""
    if not version.web or version.web[0] != "asgi":
        return None
    import _push_web
    lifespan = _push_web.Lifespan(version.web[1])
    failed = lifespan.start()
    if failed is not None:
        return f"the ASGI app's lifespan startup failed on Python {PYTHON}: {failed}"
    version.lifespan = lifespan
    return None


def _stop_lifespan(version):
    if version.lifespan is not None:
        failed = version.lifespan.stop()
        version.lifespan = None
        if failed:
            import logging
            logging.getLogger("push").warning("%s@v%s: ASGI lifespan shutdown: %s", version.app, version.number, failed)


def shutdown_all():
    """End the lifespan of every ASGI version loaded in this worker and remove its copies
    of the versions' files (it is stopping)."""
    for state in list(_apps.values()):
        for version in list(state["versions"].values()):
            _stop_lifespan(version)
    _push_files.remove_files()


def load(app, number, files, entry, web=None):
    """Load a version and make it HEAD for ``app``. Returns None or an error message."""
    with _lock:
        state = _apps.get(app)
        first = None
        if state is None or state["head"] is None:
            first = _first_loads.setdefault(app, threading.Event())
    try:
        return _load_head(app, number, files, entry, web)
    finally:
        if first is not None:
            with _lock:
                _first_loads.pop(app, None)
            first.set()


def _await_first_load(app):
    """The state of ``app`` once a first load of it in progress here has ended (or None)."""
    first = _first_loads.get(app)
    if first is not None:
        first.wait(FIRST_LOAD_WAIT)
    return _apps.get(app)


def _load_head(app, number, files, entry, web):
    try:
        if web:
            _push_web.app_environ(app, force=True)
        version = _load(app, number, files, entry, web)
    except SyntaxError as exc:
        return _error(f"syntax error on Python {PYTHON}", exc)
    except BaseException as exc:  # noqa: BLE001
        return _error(f"importing {entry!r} failed on Python {PYTHON}", exc)
    with _lock:
        state = _apps.setdefault(app, {"head": None, "versions": {}})
        old = state["head"]
        if old is not None:
            for n in old.modules:
                sys.modules.pop(n, None)
        sys.modules.update(version.modules)
    # An ASGI lifespan starts with the version's modules importable (resources by name).
    try:
        failed = _start_lifespan(version)
    except BaseException as exc:  # noqa: BLE001
        failed = _error("the ASGI app's lifespan startup failed", exc)
    with _lock:
        if failed is not None:
            for n in version.modules:
                sys.modules.pop(n, None)
            if old is not None:
                sys.modules.update(old.modules)
            return failed
        state["head"] = version  # the atomic swap: new requests see the new version
        _remember(state, version)
    return None


# Versions kept loaded besides HEAD (for pinned requests); older ones are dropped.
MAX_LOADED = 8


def _remember(state, version):
    versions = state["versions"]
    versions[version.number] = version
    head = state["head"].number if state["head"] else None
    while len(versions) > MAX_LOADED:
        oldest = min(n for n in versions if n != head)
        _stop_lifespan(versions.pop(oldest))


def _load_pinned(app, number):
    """Load a non-HEAD version on demand for a pinned request. Returns (version, error)."""
    import _push_native
    found = _push_native.version_source(app, number)
    if found is None:
        return None, f"{app} has no version {number}"
    files, entry, web = found
    try:
        version = _load(app, number, files, entry, web)
        failed = _start_lifespan(version)
        if failed is not None:
            return None, failed
    except BaseException as exc:  # noqa: BLE001
        return None, _error(f"version {number} failed to load", exc)
    with _lock:
        _remember(_apps[app], version)
    return version, None


def serving(app):
    state = _apps.get(app)
    return state["head"].number if state and state["head"] else None


def handle_http(app, pinned, method, path, query, headers, body, on_route=None, exchange=None,
                extra=(False, "", "", "")):
    """Run the handler for one request. Returns (status, headers, body, version, error_log,
    streamed); when ``streamed``, the answer went out through ``exchange`` already.

    ``on_route(timeout, thread_ident)`` is called once the route is known, before the handler
    runs, so the worker can hold the request to the route's timeout and interrupt this thread.
    ``@push.route`` routes come first; a path none of them knows goes to the version's WSGI or
    ASGI app, if ``push.ron`` names one. ``extra`` is (more body follows, the raw query
    string, the client's address, the server's address)."""
    more, query_string, client, server = extra
    state = _apps.get(app)
    if state is None or state["head"] is None:
        state = _await_first_load(app)
    if state is None or state["head"] is None:
        return 503, {"content-type": "text/plain"}, f"no version of {app!r} is running on this node (python worker pid {os.getpid()}); deploy one with `push deploy DIR`\n".encode(), None, None, False
    version = state["head"]
    if pinned is not None and pinned != version.number:
        version = state["versions"].get(pinned)
        if version is None:
            version, error = _load_pinned(app, pinned)
            if version is None:
                return 404, {"content-type": "text/plain"}, f"{error}\n".encode(), None, None, False
    route, params, allowed = version.routes.match(method, path)
    if route is None and version.web is not None and not allowed:
        return _serve_web(app, version, method, path, headers, body, on_route, exchange, more, query_string, client, server)
    if route is None:
        if allowed:
            text = f"{method} is not allowed on {path}; it takes {', '.join(allowed)}\n"
            return 405, {"content-type": "text/plain", "allow": ", ".join(allowed)}, text.encode(), version.number, None, False
        text = f"no route for {method} {path} in {app}@v{version.number}\n"
        return 404, {"content-type": "text/plain"}, text.encode(), version.number, None, False
    if on_route is not None:
        on_route(route.timeout, threading.get_ident())
    _registry.version = version.number
    set_origin(app, version.number, f"route {method} {path}")
    streamed = False
    try:
        if more:
            body = _push_web.rest_of_body(exchange, body, more)
        if route.wants_request:
            result = route.fn(_push_routes.Request(method, path, query, headers, body, params), **params)
        else:
            result = route.fn(**params)
        status, out_headers, out = _push_routes.to_response(result)
        if not isinstance(out, bytes):
            if exchange is None:
                out = b"".join(_push_web._text(c) for c in out)
            else:
                streamed = True
                _push_web.stream(exchange, status, out_headers, out, version.number)
                return status, {}, b"", version.number, None, True
        return status, out_headers, out, version.number, None, False
    except _push_web.ClientDisconnected:
        return 499, {}, b"", version.number, None, streamed
    except BaseException as exc:  # noqa: BLE001 - a handler's exception is a 500, never a crash
        log = format_exception(exc)
        _keep_request(exc, app, version.number, f"route {method} {path}", method, path, query, headers,
                      body, query_string, client, server)
        return 500, {"content-type": "text/plain"}, b"internal server error\n", version.number, log, streamed
    finally:
        _registry.version = None
        clear_origin()


def _serve_web(app, version, method, path, headers, body, on_route, exchange, more, query_string, client, server):
    """One request for the version's WSGI or ASGI app (see handle_http)."""
    if on_route is not None:
        on_route(None, threading.get_ident())
    _registry.version = version.number
    set_origin(app, version.number, f"{version.web[0]} {method} {path}")
    sent = False
    try:
        kind, callable_ = version.web
        app_env = _push_web.app_environ(app)
        if kind == "wsgi":
            env = _push_web.environ(method, path, query_string, headers, client, server, exchange, body, more, app_env)
            sent = _push_web.serve_wsgi(callable_, env, exchange, version.number)
        else:
            state = version.lifespan.state if version.lifespan else {}
            scope = _push_web.scope(method, path, query_string, headers, client, server, state)
            sent = _push_web.serve_asgi(callable_, scope, exchange, body, more, version.number)
        return 200, {}, b"", version.number, None, True
    except _push_web.ClientDisconnected:
        return 499, {}, b"", version.number, None, True
    except BaseException as exc:  # noqa: BLE001 - an app's exception is a 500, never a crash
        log = format_exception(exc)
        _keep_request(exc, app, version.number, f"{version.web[0]} {method} {path}", method, path, {}, headers,
                      body if not more else b"", query_string, client, server)
        return 500, {"content-type": "text/plain"}, b"internal server error\n", version.number, log, sent
    finally:
        _registry.version = None
        clear_origin()


def _keep_request(exc, app, version, origin, method, path, query, headers, body, query_string, client, server):
    """Keep a handler's unhandled exception with its request, for post-mortem (``:pm``)."""
    import _push_pm
    request = {"method": method, "path": path, "query": list(dict(query).items()),
               "headers": list(dict(headers).items()), "body": bytes(body or b""),
               "query_string": query_string, "client": client, "server": server}
    _push_pm.keep(exc, app, version, origin, request=request)


def register_route(methods, path, fn, timeout=None):
    routes = _current_routes()
    if routes is None:
        raise RuntimeError("push.route can only be used while a version is being loaded (at module level)")
    routes.append(_push_routes.Route(methods, path, fn, timeout))


def register_task(spec, fn):
    """Record a daemon, schedule or partition handler declared by the version being loaded."""
    import inspect
    import json
    tasks = getattr(_registry, "tasks", None)
    if tasks is None:
        raise RuntimeError(f"push.{spec['kind']} can only be used while a version is being loaded (at module level)")
    if any(t["name"] == spec["name"] for t in tasks):
        raise ValueError(f"two tasks are called {spec['name']!r}; give one a name= of its own")
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(getattr(fn, "__code__", fn))
    fingerprint = json.dumps({k: v for k, v in spec.items()}, sort_keys=True) + source
    import hashlib  # here: it loads libcrypto, a few MB an idle worker does not need
    spec = dict(spec, fn=fn, hash=hashlib.sha256(fingerprint.encode()).hexdigest()[:16])
    tasks.append(spec)


def head_tasks(app):
    """(version, [task spec without the function]) of the app's HEAD, as JSON for Rust."""
    import json
    state = _apps.get(app)
    if not state or not state["head"]:
        return None
    head = state["head"]
    specs = [{k: v for k, v in t.items() if k != "fn"} for t in head.tasks.values()]
    return json.dumps({"version": head.number, "tasks": specs})


def head_version(app):
    state = _apps.get(app)
    return state["head"] if state else None


def current_version():
    v = getattr(_registry, "version", None)
    if v is not None:
        return v
    return serving("main")


def current_app():
    """The app whose code runs on this thread: the one loading, else the origin's (handler,
    daemon, schedule), else "main" (evals and lambdas)."""
    return getattr(_registry, "app", None) or getattr(_origin, "app", None) or "main"


def guard_recursion(cap, stack):
    """Keep deep recursion a RecursionError, never a C stack overflow that aborts the node.

    Threads Python code starts get a ``stack``-byte stack like Push's own Python threads, and
    ``sys.setrecursionlimit`` is capped at ``cap`` (which fits in that stack), with a note on
    stderr saying so. Called once at startup.
    """
    threading.stack_size(stack)
    original = sys.setrecursionlimit

    def setrecursionlimit(limit):
        if isinstance(limit, int) and limit > cap:
            sys.stderr.write(
                f"push: sys.setrecursionlimit({limit}) capped at {cap}: deeper recursion would "
                f"overflow the thread's C stack and abort the node; make deep recursion iterative\n"
            )
            limit = cap
        original(limit)

    setrecursionlimit.__doc__ = original.__doc__
    sys.setrecursionlimit = setrecursionlimit


def pack_code(code):
    """A code object as bytes another node can run: marshal data is only valid for the same
    Python version, so it travels behind this interpreter's bytecode magic and version."""
    return importlib.util.MAGIC_NUMBER + PYTHON.encode() + b"\0" + marshal.dumps(code)


def unpack_code(blob):
    """The code object of ``pack_code``'s bytes, or a RuntimeError naming both versions when
    another Python version made them (running foreign bytecode could crash the node)."""
    magic, (version, _, data) = blob[:4], blob[4:].partition(b"\0")
    if magic != importlib.util.MAGIC_NUMBER:
        raise RuntimeError(
            f"this function was compiled by Python {version.decode(errors='replace')} and "
            f"cannot run on Python {PYTHON} here: pass it as a 'module:function' path of "
            f"the deployed app (source runs on every version), or run it on= nodes with "
            f"the same Python")
    return marshal.loads(data)
