"""Push's route table: ``@push.route`` paths with parameters, several methods, 404 vs 405.

A route is a method set and a path pattern. ``/items/{id}`` matches one path segment and
passes it as the keyword argument ``id``; ``{id:int}`` converts it to an int (a non-number
does not match); ``{rest:path}`` matches the rest of the path, slashes included. A path
whose routes all refuse the method gets 405 with an ``Allow`` header; no route at all, 404.
The newest registration of a (method, pattern) wins, and a fixed path beats a pattern.
Also what a handler gets (``Request``) and how its result becomes a response.
"""

import re
from urllib.parse import unquote

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(str|int|path))?\}")
_CONVERT = {"str": (r"[^/]+", unquote), "int": (r"-?[0-9]+", int), "path": (r".+", unquote)}


class Route:
    """One registered route: methods, the path as written, its matcher and the handler."""

    __slots__ = ("methods", "path", "regex", "converters", "fn", "wants_request", "timeout")

    def __init__(self, methods, path, fn, timeout):
        import inspect
        self.methods = methods
        self.path = path
        self.fn = fn
        self.timeout = timeout
        self.regex, self.converters = compile_path(path)
        names = set(self.converters)
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            params = None
        if params is None:
            self.wants_request = True
        else:
            takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
            missing = [n for n in names if not takes_kwargs and n not in {p.name for p in params}]
            if missing:
                raise TypeError(
                    f"the route {path!r} passes {', '.join(sorted(missing))} as keyword argument(s), "
                    f"but {getattr(fn, '__qualname__', fn)!r} does not take them: add them to its parameters"
                )
            others = [p for p in params if p.name not in names and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
            self.wants_request = bool(others)


def compile_path(path):
    """(regex or None for a fixed path, {name: converter}) of a route's path."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"a route's path starts with '/', like '/items/{{id}}', not {path!r}")
    converters = {}
    pattern, end = "^", 0
    for m in _PARAM.finditer(path):
        name, kind = m.group(1), m.group(2) or "str"
        if name in converters:
            raise ValueError(f"the route {path!r} names {{{name}}} twice")
        regex, convert = _CONVERT[kind]
        pattern += re.escape(path[end:m.start()]) + f"(?P<{name}>{regex})"
        converters[name] = convert
        end = m.end()
    rest = path[end:]
    if "{" in rest or "}" in rest:
        raise ValueError(
            f"the route {path!r} has a brace that is not a parameter: write {{name}}, {{name:int}} or {{name:path}}"
        )
    if not converters:
        return None, {}
    return re.compile(pattern + re.escape(rest) + "$"), converters


def methods_of(method, methods):
    """The upper-case method tuple of ``@push.route``'s arguments ("*" means any; none
    given means GET, as a route of only a path)."""
    given = methods if methods is not None else method
    if given is None:
        return ("GET",)
    if isinstance(given, str):
        given = [given]
    try:
        given = [str(m).upper() for m in given]
    except TypeError:
        raise TypeError(f"methods must be a method name or a list of them, like ['GET', 'POST'], not {given!r}") from None
    if not given:
        raise ValueError("a route needs at least one method, like methods=['GET']")
    for m in given:
        if m != "*" and m not in METHODS:
            raise ValueError(f"{m!r} is not an HTTP method Push routes; use one of {', '.join(METHODS)} or '*'")
    return tuple(dict.fromkeys(given))


class Table:
    """A version's routes: fixed paths by dict lookup, patterns in registration order."""

    def __init__(self, routes=()):
        self.fixed = {}      # path -> [Route], newest first
        self.patterns = []   # [Route], newest first
        for r in routes:
            self.add(r)

    def add(self, route):
        if route.regex is None:
            self.fixed.setdefault(route.path, []).insert(0, route)
        else:
            self.patterns.insert(0, route)

    def __len__(self):
        return sum(len(v) for v in self.fixed.values()) + len(self.patterns)

    def match(self, method, path):
        """(route, params, allowed): the route for the request and its path parameters, or
        (None, None, allowed methods) when there is none (an empty ``allowed`` is a 404)."""
        allowed = []
        candidates = self.fixed.get(path)
        if candidates:
            for r in candidates:
                if _accepts(r.methods, method):
                    return r, {}, None
                allowed.extend(r.methods)
        for r in self.patterns:
            m = r.regex.match(path)
            if m is None:
                continue
            try:
                params = {k: r.converters[k](v) for k, v in m.groupdict().items()}
            except ValueError:
                continue
            if _accepts(r.methods, method):
                return r, params, None
            allowed.extend(r.methods)
        allowed = list(dict.fromkeys(allowed))
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
        return None, None, allowed


def _accepts(methods, method):
    return "*" in methods or method in methods or (method == "HEAD" and "GET" in methods)


class Request:
    """An HTTP request as a handler sees it."""

    def __init__(self, method, path, query, headers, body, params=None):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.params = params or {}

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        import json
        return json.loads(self.body or b"null")

    def __repr__(self):
        return f"<Request {self.method} {self.path}>"


def _streams(result):
    """Whether a handler's result is an iterator of chunks to stream (a generator, say)."""
    return hasattr(result, "__next__")


def to_response(result):
    """A handler's result as (status, headers, body); body may be an iterator to stream."""
    import push
    status, headers = 200, {}
    if isinstance(result, push.Response):
        return result.status, result.headers, result.body
    if _streams(result):
        return 200, {"content-type": "text/plain; charset=utf-8"}, result
    if isinstance(result, tuple):
        if len(result) == 3:
            status, result, headers = result
        elif len(result) == 2:
            status, result = result
        else:
            raise TypeError("a handler may return (status, body) or (status, body, headers)")
    if isinstance(result, str):
        headers.setdefault("content-type", "text/plain; charset=utf-8")
        body = result.encode("utf-8")
    elif isinstance(result, (bytes, bytearray)):
        headers.setdefault("content-type", "application/octet-stream")
        body = bytes(result)
    elif result is None:
        body = b""
    else:
        import json
        headers.setdefault("content-type", "application/json")
        body = json.dumps(result).encode("utf-8")
    return int(status), {str(k): str(v) for k, v in headers.items()}, body
