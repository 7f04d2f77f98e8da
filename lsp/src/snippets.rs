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

/// Code that redefines `source` (top-level statements from the module's file, the first on
/// line `first_line`, 1-based) inside the module it is evaluated in, through the node's one
/// hot-patch path (`hot_patch` in the node's session module, the same code the REPL's `:in`
/// and `push eval --module` run): a plain function that already exists is patched in place
/// (code, defaults, docstring; its decorators are not run again), so routes, daemons and
/// `from m import f` names run the new code; anything else executes as written. The value is
/// what was done ("patched f in m", "defined g in m (new)"). Line numbers and the module's
/// file name are kept, so tracebacks point at the right file and line.
pub fn patch(source: &str, first_line: u32) -> String {
    format!(
        "__import__(\"_push_session\").hot_patch(globals(), {}, {})\n",
        py_str(source),
        first_line.max(1)
    )
}
