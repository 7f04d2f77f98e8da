"""Push runtime: the app's `logging` records and secret values in a worker.

Every `logging` record reaches the node's log (stderr, text or JSON) and its `push logs` ring,
tagged with where the code runs (``set_origin``, per thread); secret values code read through
``push.secret`` are replaced by "[secret]" in those records and in tracebacks (``redact``).
The node's log handler is installed the moment anything imports ``logging``, so an idle worker
never imports it. Loaded as ``_push_logs`` before the bootstrap, which re-exports its names.
"""

import importlib.machinery
import sys
import threading

try:
    # importlib.abc.Loader itself, without importlib.abc's imports (see files.py).
    from importlib._abc import Loader as _Loader
except ImportError:  # pragma: no cover - an interpreter without the private module
    from importlib.abc import Loader as _Loader


# -- secrets kept out of logs ----------------------------------------------------------------
# Values `push.secret` returned on this node, newest last: log records and tracebacks (which
# viewers read through `push logs`, `push daemons`) show "[secret]" in their place.

_secrets = {}
_MAX_SECRETS = 1000


def remember_secret(value):
    """Note a secret value code read here, so log records and tracebacks hide it."""
    if len(value) >= 4:
        _secrets.pop(value, None)
        _secrets[value] = None
        while len(_secrets) > _MAX_SECRETS:
            _secrets.pop(next(iter(_secrets)))


def redact(text):
    """``text`` with every remembered secret value replaced by "[secret]"."""
    for value in list(_secrets):
        if value in text:
            text = text.replace(value, "[secret]")
    return text


# -- app logging ---------------------------------------------------------------------------
# Every `logging` record reaches the node's log (stderr, text or JSON) and its `push logs`
# ring as a tracing event, tagged with where the code runs: set per thread by the runtime.

_origin = threading.local()


def set_origin(app, version, source, tee=None):
    """Tag this thread's log records; ``tee(text)`` also receives each record as a line."""
    _origin.app, _origin.version, _origin.source, _origin.tee = app, version, source, tee


def clear_origin():
    _origin.__dict__.clear()


def _node_log_handler(logging):
    """The root logger's handler: hands records to the node (``_push_native.log``)."""

    class _NodeLogHandler(logging.Handler):
        _formatter = logging.Formatter()

        def emit(self, record):
            try:
                message = record.getMessage()
                if record.exc_info:
                    message += "\n" + self._formatter.formatException(record.exc_info)
                message = redact(message)
                import _push_native
                _push_native.log(record.levelno, record.name, message,
                                 getattr(_origin, "app", None), getattr(_origin, "version", None),
                                 getattr(_origin, "source", None))
                tee = getattr(_origin, "tee", None)
                if tee is not None:
                    tee(f"{record.levelname} {message}\n")
            except Exception:  # noqa: BLE001 - logging must never raise into app code
                self.handleError(record)

    return _NodeLogHandler()


def _install_logging(logging):
    root = logging.getLogger()
    if not any(getattr(h, "_push_node", False) for h in root.handlers):
        handler = _node_log_handler(logging)
        handler._push_node = True
        root.addHandler(handler)
    # Python's default (WARNING) would drop the info records apps expect to see.
    if root.level == logging.WARNING:
        root.setLevel(logging.INFO)


class _AfterLoad(_Loader):
    """A module's own loader, then ``then(module)``; everything else is the real loader's."""

    def __init__(self, loader, then):
        self._loader, self._then = loader, then

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        # Introspection (inspect.getsource, resources) sees the real loader.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._then(module)


class _LoggingHook:
    """A meta path finder (``find_spec``; not subclassing ``importlib.abc.MetaPathFinder``,
    whose module costs ~4 MB of imports). Installs the node's log handler the moment anything (app code, the runtime) imports
    ``logging``: an idle worker never does, and spares its memory (about 0.6 MB)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "logging":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _AfterLoad(spec.loader, _install_logging)
        return spec


if "logging" in sys.modules:
    _install_logging(sys.modules["logging"])
else:
    sys.meta_path.insert(0, _LoggingHook())
