//! Python sent to the node on the editor's behalf: the syntax check behind as-you-type
//! diagnostics, and the hot patch behind `push.evalInModule`. Source text always travels as
//! an escaped string literal ([`py_str`]), never spliced in as code.

use crate::text::py_str;

/// Code that compiles `source` as file `path` without running it and prints, as JSON,
/// `[lineno, offset, end_lineno, end_offset, msg]` for a syntax error, or nothing.
/// Evaluated in a throwaway namespace, so it touches no session or module.
pub fn syntax_check(source: &str, path: &str) -> String {
    format!(
        r#"def __push_check(src, path):
    import json
    try:
        compile(src, path, "exec", 0, True)
    except SyntaxError as e:
        print(json.dumps([e.lineno, e.offset, getattr(e, "end_lineno", None), getattr(e, "end_offset", None), e.msg]))
    except (ValueError, OverflowError) as e:
        print(json.dumps([1, 1, None, None, str(e)]))
__push_check({}, {})
"#,
        py_str(source),
        py_str(path)
    )
}

/// Code that redefines `source` (one top-level statement from the module's file, whose first
/// line is `first_line`, 1-based) inside the module it is evaluated in.
///
/// A plain function that already exists is patched in place: its code object, defaults and
/// docstring are swapped, so every reference to it — routes registered by `@push.route`,
/// names imported elsewhere with `from m import f`, callbacks — runs the new code, and the
/// decorators are not run again (most register things and may only run at import). Anything
/// else (a class, a new name, a wrapped function, other statements) is executed normally in
/// the module's namespace. Line numbers are shifted and the module's file name is used, so
/// tracebacks from patched code point at the right file and line.
pub fn patch(source: &str, first_line: u32) -> String {
    format!(
        r#"def __push_patch(g, src, first):
    import ast, types
    g.pop("__push_patch", None)
    filename = g.get("__file__") or "<patch>"
    try:
        tree = ast.parse(src, filename, "exec")
    except SyntaxError as e:
        if e.lineno:
            e.lineno += first - 1
        if getattr(e, "end_lineno", None):
            e.end_lineno += first - 1
        raise
    ast.increment_lineno(tree, first - 1)
    node = tree.body[0] if len(tree.body) == 1 else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        name = node.name
        old = g.get(name)
        if isinstance(old, types.FunctionType) and old.__name__ == name and not hasattr(old, "__wrapped__"):
            temp = "__push_patch_" + name
            node.decorator_list = []
            node.name = temp
            exec(compile(tree, filename, "exec"), g)
            new = g.pop(temp)
            try:
                code = new.__code__.replace(co_name=old.__code__.co_name)
                if hasattr(code, "co_qualname"):
                    code = code.replace(co_qualname=old.__code__.co_qualname)
                old.__code__ = code
            except ValueError:
                new.__name__ = name
                g[name] = new
                return f"redefined {{name}} in {{g['__name__']}} (a new object: its closure changed)"
            old.__defaults__ = new.__defaults__
            old.__kwdefaults__ = new.__kwdefaults__
            old.__doc__ = new.__doc__
            old.__annotations__ = new.__annotations__
            return f"patched {{name}} in {{g['__name__']}}"
    exec(compile(tree, filename, "exec"), g)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return f"defined {{node.name}} in {{g['__name__']}}"
    return f"evaluated in {{g['__name__']}}"
__push_patch(globals(), {}, {})
"#,
        py_str(source),
        first_line.max(1)
    )
}
