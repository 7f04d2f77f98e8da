"""Live evaluation: sessions, eval with streamed output, completion, inspection, interrupt.

Rust calls these on dedicated eval threads. Output printed by an evaluation is routed, per
thread, to a sink that streams it to the client; everything else still reaches the node's own
stdout/stderr.
"""

import builtins
import itertools
import sys
import threading
import time
import traceback

import _push_runtime

MAX_REPR = 64 * 1024

_sessions = {}          # id -> namespace dict
_running = {}           # session id -> thread ident of its running eval
_ids = itertools.count(1)
_local = threading.local()
MAX_SESSIONS = 256


class _Router:
    """Stands in for sys.stdout/sys.stderr: writes go to the current eval's sink, if any."""

    def __init__(self, original, stream):
        self._original = original
        self._stream = stream

    def write(self, text):
        sink = getattr(_local, "sink", None)
        if sink is None:
            return self._original.write(text)
        sink.write(self._stream, str(text))
        return len(text)

    def flush(self):
        if getattr(_local, "sink", None) is None:
            self._original.flush()

    def __getattr__(self, name):
        return getattr(self._original, name)


sys.stdout = _Router(sys.stdout, 0)
sys.stderr = _Router(sys.stderr, 1)


def _new_namespace():
    ns = {"__name__": "__console__", "__builtins__": builtins}
    try:
        import push
        ns["push"] = push
    except ImportError:
        pass
    return ns


def open_session():
    sid = next(_ids)
    if len(_sessions) >= MAX_SESSIONS:
        del _sessions[min(_sessions)]
    _sessions[sid] = _new_namespace()
    return sid


def close_session(sid):
    return _sessions.pop(sid, None) is not None


def _namespace(sid, module):
    if module:
        # Under the loader's lock: while a version loads (or the deploy gate imports one to
        # check it), sys.modules briefly holds scratch modules that no handler runs.
        with _push_runtime._lock:
            mod = sys.modules.get(module)
        if mod is None:
            raise LookupError(f"no module {module!r} is loaded on this node (app modules at HEAD and imported libraries can be used)")
        return mod.__dict__
    if sid is None:
        return _new_namespace()
    ns = _sessions.get(sid)
    if ns is None:
        raise LookupError(f"session {sid} does not exist on this node (closed, or the node restarted); open a new one")
    return ns


def _short_repr(value):
    try:
        text = repr(value)
        if len(text) > 100 and isinstance(value, (dict, list, tuple, set)) and len(text) < MAX_REPR:
            import pprint
            text = pprint.pformat(value, width=100, sort_dicts=False)
    except BaseException as exc:  # noqa: BLE001
        text = f"<repr failed: {type(exc).__name__}: {exc}>"
    if len(text) > MAX_REPR:
        cut = len(text) - MAX_REPR
        return text[:MAX_REPR], f"repr cut: {cut} of {len(text)} characters not shown"
    return text, None


def _exception(exc):
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(("<push>", "<frozen"))
    ]
    if isinstance(exc, SyntaxError) and not frames[1:]:
        frames = []  # the parser's own frame says nothing; the message has file and line
    formatted = ["Traceback (most recent call last):\n"] + traceback.format_list(frames)
    formatted += traceback.format_exception_only(type(exc), exc)
    return {
        "type_name": type(exc).__name__,
        "message": str(exc),
        "frames": [(f.filename, f.lineno or 0, f.name, (f.line or "").strip()) for f in frames],
        "formatted": "".join(formatted).rstrip(),
    }


_counter = itertools.count(1)


def evaluate(sid, code, module, sink, frame=None):
    """Run ``code``; returns a dict describing the outcome. Output goes to ``sink``.
    ``frame`` is (globals, locals) of a kept failure's frame to evaluate in (``:pm``)."""
    import ast
    started = time.perf_counter()
    result = {"value": None, "type_name": None, "error": None, "truncated": None, "patch": None}
    _local.sink = sink
    _push_runtime.set_origin(None, None, "eval")
    if sid is not None:
        _running[sid] = threading.get_ident()
    try:
        ns, local_ns = frame if frame is not None else (_namespace(sid, module), None)
        filename = f"<eval-{next(_counter)}>"
        import linecache
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        if module:
            _local.patched = False
            result["patch"] = _replayed(code, tree)
            for note in _patch_tree(ns, tree, filename):
                sink.write(1, note + "\n")
        else:
            exec(compile(tree, filename, "exec"), ns, local_ns)
        if last is not None:
            value = eval(compile(last, filename, "eval"), ns, local_ns)
            if module and _local.patched:
                # An editor's patch (a call of hot_patch) is replayed whole.
                result["patch"] = code
            if value is not None:
                result["value"], result["truncated"] = _short_repr(value)
                result["type_name"] = type(value).__name__
                if module is None:
                    (ns if local_ns is None else local_ns)["_"] = value
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the client
        result["error"] = _exception(exc)
    finally:
        if sid is not None:
            _running.pop(sid, None)
        _local.sink = None
        _push_runtime.clear_origin()
    result["micros"] = int((time.perf_counter() - started) * 1e6)
    return result


def _replayed(code, tree):
    """What of an evaluation in a module the node replays on the app's other workers (and on
    workers started later), so every request sees it: the top-level statements that define
    names of the module -- def, class, import, and assignments whose targets are plain names
    (``LIMIT = 10``). Everything else -- an expression such as ``square(12)`` or
    ``q.put(1)``, ``push.kv("m")["k"] = 1``, a loop -- runs once, on the worker that evaluated
    it. None when nothing is to be replayed."""
    def names_only(target):
        import ast
        if isinstance(target, ast.Name):
            return True
        if isinstance(target, (ast.Tuple, ast.List)):
            return all(names_only(t) for t in target.elts)
        return False

    def defines(stmt):
        import ast
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                             ast.Import, ast.ImportFrom)):
            return True
        if isinstance(stmt, ast.Assign):
            return all(names_only(t) for t in stmt.targets)
        if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            return names_only(stmt.target)
        return False

    kept = [stmt for stmt in tree.body if defines(stmt)]
    if not kept:
        return None
    lines = code.splitlines(True)
    # Keep line numbers: blank lines stand in for what is left out.
    out = ["\n"] * len(lines)
    for stmt in kept:
        first = (stmt.decorator_list[0].lineno if getattr(stmt, "decorator_list", None) else stmt.lineno) - 1
        for i in range(first, stmt.end_lineno):
            out[i] = lines[i]
    return "".join(out)


def hot_patch(g, src, first=1):
    """Runs ``src`` (source from the module's file whose first line is ``first``, 1-based) in
    module namespace ``g`` as :func:`evaluate` does for a module, under the module's file name
    so tracebacks point at the right file and line. Returns what it did, one note a line
    ("evaluated in M" when nothing was defined). The editors' patch command calls this."""
    import ast
    filename = g.get("__push_file__") or g.get("__file__") or "<patch>"
    try:
        tree = ast.parse(src, filename, "exec")
    except SyntaxError as e:
        if e.lineno:
            e.lineno += first - 1
        if getattr(e, "end_lineno", None):
            e.end_lineno += first - 1
        raise
    ast.increment_lineno(tree, first - 1)
    _local.patched = True
    notes = _patch_tree(g, tree, filename)
    return "; ".join(notes) if notes else f"evaluated in {g.get('__name__')}"


def _patch_tree(g, tree, filename):
    """The one hot-patch path (REPL ``:in``, ``push eval --module``, editors): runs each
    top-level statement of ``tree`` in module namespace ``g``. A function that already exists
    as a plain function is patched in place -- it keeps its identity and takes the new code,
    defaults, keyword defaults, docstring and annotations -- so routes registered by
    ``@push.route``, daemons and schedules, and names imported elsewhere with ``from m import
    f`` run the new code at once, and its decorators are not run again (most register things
    and may only run while a version loads). Anything else (a new name, a class, a wrapped
    function, other statements) executes as written. Returns a note per definition."""
    notes = []
    for stmt in tree.body:
        note = _patch_statement(g, stmt, filename)
        if note:
            notes.append(note)
    return notes


def _patch_statement(g, stmt, filename):
    import ast
    import inspect
    import types
    where = g.get("__name__")
    is_def = isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))
    name = getattr(stmt, "name", None)
    old = g.get(name) if is_def else None
    if (
        isinstance(old, types.FunctionType) and old.__name__ == name
        and not hasattr(old, "__wrapped__")
        and inspect.iscoroutinefunction(old) == isinstance(stmt, ast.AsyncFunctionDef)
    ):
        temp = "__push_patch_" + name
        decorators = stmt.decorator_list
        stmt.decorator_list, stmt.name = [], temp
        try:
            exec(compile(ast.Module([stmt], []), filename, "exec"), g)
        finally:
            stmt.decorator_list, stmt.name = decorators, name
        new = g.pop(temp)
        code = new.__code__.replace(co_name=old.__code__.co_name)
        if hasattr(code, "co_qualname"):
            code = code.replace(co_qualname=old.__code__.co_qualname)
        if code.co_freevars != old.__code__.co_freevars:
            new.__name__, new.__qualname__ = name, old.__qualname__
            g[name] = new
            return (f"redefined {name} in {where} as a new object: its free variables changed "
                    f"({', '.join(old.__code__.co_freevars) or 'none'} -> "
                    f"{', '.join(code.co_freevars) or 'none'}), so references taken earlier "
                    "keep the old code")
        old.__code__ = code
        old.__defaults__ = new.__defaults__
        old.__kwdefaults__ = new.__kwdefaults__
        old.__doc__ = new.__doc__
        old.__annotations__ = new.__annotations__
        return f"patched {name} in {where}"
    existed = name in g if name else False
    exec(compile(ast.Module([stmt], []), filename, "exec"), g)
    if is_def or isinstance(stmt, ast.ClassDef):
        if existed:
            return f"redefined {name} in {where} (a new object: references taken earlier keep the old one)"
        return f"defined {name} in {where} (new)"
    return None


def interrupt(sid):
    """Raise KeyboardInterrupt in the thread running ``sid``'s eval. Returns whether one ran."""
    import ctypes
    ident = _running.get(sid)
    if ident is None:
        return False
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
    return n == 1


def interrupt_thread(ident):
    """Raise KeyboardInterrupt in thread ``ident`` (a handler past its timeout)."""
    import ctypes
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
    return n == 1


def is_complete(code):
    """As the interactive interpreter decides: an open block needs more lines, and an
    indented block ends with an empty last line (the code ends with a newline); invalid code
    counts as complete (eval reports the error)."""
    import codeop
    try:
        if codeop.compile_command(code, "<input>", "exec") is None:
            return False
    except (SyntaxError, ValueError, OverflowError):
        return True
    lines = [line for line in code.split("\n") if line.strip()]
    if lines and lines[-1][:1] in (" ", "\t") and not code.endswith("\n"):
        return False
    return True


def complete(sid, code, cursor, module=None):
    """Completions at ``cursor``: (start offset, [candidates]), in ``module``'s namespace when
    given and loaded (an editor's file of the app), else in the session's."""
    ns = None
    if module:
        with _push_runtime._lock:
            mod = sys.modules.get(module)
        ns = getattr(mod, "__dict__", None)
    if ns is None and sid is not None:
        ns = _sessions.get(sid)
    if ns is None:
        ns = _new_namespace()
    text = code[:cursor]
    try:
        import jedi
        lines = text.split("\n")
        script = jedi.Interpreter(code, [ns])
        found = script.complete(len(lines), len(lines[-1]))
        if found:
            prefix_len = len(found[0].name) - len(found[0].complete)
            return cursor - prefix_len, [c.name for c in found[:200]]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - fall back to rlcompleter
        pass
    attr = _attribute_completions(ns, text)
    if attr is not None:
        partial, names = attr
        return cursor - len(partial), names
    import re
    import rlcompleter
    match = re.search(r"[\w.]*$", text)
    word = match.group(0) if match else ""
    completer = rlcompleter.Completer(ns)
    items = []
    for state in range(500):
        item = completer.complete(word, state)
        if item is None:
            break
        items.append(item)
    start = cursor - len(word)
    dot = word.rfind(".")
    if dot >= 0:
        items = [i[dot + 1:] for i in items]
        start += dot + 1
    return start, [i.rstrip("(") for i in items]


def _receiver(text):
    """Split ``...<expr>.<partial>`` into (expr, partial); None if the text does not end so."""
    import re
    m = re.search(r"\.(\w*)$", text)
    if not m:
        return None
    end = i = m.start()
    depth = 0
    while i > 0:
        ch = text[i - 1]
        if ch in ")]}":
            depth += 1
        elif ch in "([{":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and ch in "\"'":
            j = text.rfind(ch, 0, i - 1)
            if j < 0:
                break
            i = j
            continue
        elif depth == 0 and not (ch.isalnum() or ch in "_."):
            break
        i -= 1
    expr = text[i:end].strip()
    return (expr, m.group(1)) if expr else None


def _attribute_completions(ns, text):
    """Members of the live object before the last dot: ``push.kv("x").`` evaluates the
    receiver (never its repr) and lists its attributes."""
    found = _receiver(text)
    if found is None:
        return None
    expr, partial = found
    if ":=" in expr or "import" in expr or expr[0].isdigit():
        return None
    try:
        obj = eval(compile(expr, "<complete>", "eval"), ns)
    except BaseException:  # noqa: BLE001 - nothing to complete from
        return None
    names = sorted(n for n in dir(obj) if n.startswith(partial) and (partial.startswith("_") or not n.startswith("_")))
    return partial, names


def inspect_expr(sid, expr):
    import inspect
    ns = _namespace(sid, None)
    value = eval(expr, ns)
    try:
        signature = str(inspect.signature(value))
    except (TypeError, ValueError):
        signature = None
    doc = inspect.getdoc(value)
    try:
        file = inspect.getsourcefile(value) or inspect.getfile(value)
        line = inspect.getsourcelines(value)[1]
    except (TypeError, OSError):
        file, line = None, None
    text, _ = _short_repr(value)
    return {
        "type_name": type(value).__name__,
        "signature": signature,
        "doc": doc,
        "file": file,
        "line": line,
        "repr": text[:1000],
    }
