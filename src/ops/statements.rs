//! Whether code evaluated inside an app module changes that module (a definition, an
//! assignment, an import: a hot-patch) or only evaluates something there (an eval), so the
//! audit log names read-only calls as evals.
//!
//! A light scan of Python's top-level statements, not a parser: strings, comments, brackets
//! and line continuations are followed so that only statements at the module's top level
//! count. It errs towards "hot-patch" (a compound statement such as `if` or `for`, which may
//! bind names, counts as one), so a change is never recorded as a mere eval.

/// Whether `code`, evaluated in a module's namespace, may define or rebind names there.
pub fn changes_module(code: &str) -> bool {
    if let Some(source) = editor_patch_source(code) {
        return changes_module(&source);
    }
    top_level_statements(code).iter().any(|s| binds(s))
}

/// The source an editor's patch command carries: the editors send
/// `__import__("_push_session").hot_patch(globals(), "<source>", <line>)`.
fn editor_patch_source(code: &str) -> Option<String> {
    let rest = code
        .trim_start()
        .strip_prefix("__import__(\"_push_session\").hot_patch(globals(), \"")?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'x' => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The module's top-level statements, each with its continuation lines and the blocks
/// indented under it joined in, strings and comments blanked out.
fn top_level_statements(code: &str) -> Vec<String> {
    let mut statements: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quote: Option<&str> = None;
    let mut continued = false;
    for line in code.lines() {
        let starts_new = depth == 0
            && quote.is_none()
            && !continued
            && line.starts_with(|c: char| !c.is_whitespace() && c != '#');
        if starts_new && !current.trim().is_empty() {
            statements.push(std::mem::take(&mut current));
        }
        let mut rest = line;
        while !rest.is_empty() {
            if let Some(q) = quote {
                match rest.find(q) {
                    Some(at) if !escaped(&rest[..at]) => {
                        rest = &rest[at + q.len()..];
                        quote = None;
                    }
                    Some(at) => rest = &rest[at + q.len()..],
                    None => rest = "",
                }
                current.push_str(" '' ");
                continue;
            }
            let c = rest.chars().next().unwrap_or(' ');
            if c == '#' {
                break;
            }
            if c == '"' || c == '\'' {
                let q = if rest.starts_with("\"\"\"") {
                    "\"\"\""
                } else if rest.starts_with("'''") {
                    "'''"
                } else if c == '"' {
                    "\""
                } else {
                    "'"
                };
                quote = Some(q);
                rest = &rest[q.len()..];
                continue;
            }
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            current.push(c);
            rest = &rest[c.len_utf8()..];
        }
        // A one-line string that did not close ends at the line's end.
        if matches!(quote, Some("\"") | Some("'")) {
            quote = None;
        }
        continued = line.trim_end().ends_with('\\');
        current.push('\n');
    }
    if !current.trim().is_empty() {
        statements.push(current);
    }
    statements
}

/// Whether the text before a closing quote ends in an odd number of backslashes.
fn escaped(before: &str) -> bool {
    before.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Keywords that open a statement which may bind names in the module.
const BINDING_KEYWORDS: &[&str] = &[
    "def", "async", "class", "import", "from", "del", "global", "nonlocal", "if", "for", "while",
    "with", "try", "match",
];

/// Whether one top-level statement (strings blanked) may bind a name in the module.
fn binds(statement: &str) -> bool {
    let s = statement.trim_start();
    if s.starts_with('@') {
        return true;
    }
    let word: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let after = &s[word.len()..];
    let is_keyword = BINDING_KEYWORDS.contains(&word.as_str())
        && (after.is_empty() || after.starts_with(|c: char| !c.is_alphanumeric() && c != '_'));
    // `match` is a soft keyword: `match(x)` or `match.group` is an expression.
    if is_keyword && !(word == "match" && after.trim_start().starts_with(['(', '.', '='])) {
        return true;
    }
    assigns(s)
}

/// Whether a statement assigns at bracket depth 0 (`x = 1`, `a.b += 2`, `x: int = 3`).
fn assigns(s: &str) -> bool {
    let mut depth = 0usize;
    let mut previous = ' ';
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '=' if depth == 0 => {
                let comparison =
                    matches!(previous, '=' | '!' | '<' | '>') || chars.peek() == Some(&'=');
                if !comparison {
                    return true;
                }
                // Skip the second `=` of `==`.
                if chars.peek() == Some(&'=') {
                    chars.next();
                }
            }
            ':' if depth == 0 && chars.peek().is_some_and(|c| c.is_whitespace()) => {
                // An annotation `x: int` binds the name's annotation.
                return true;
            }
            _ => {}
        }
        previous = c;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::changes_module;

    #[test]
    fn definitions_assignments_and_imports_change_the_module() {
        for code in [
            "def greeting():\n    return 'hi'\n",
            "async def f():\n    pass",
            "class C:\n    x = 1",
            "@push.route('/')\ndef index(req):\n    return 'x'",
            "COUNT = 3",
            "stats['hits'] += 1",
            "a, b = 1, 2",
            "x: int = 4",
            "import json",
            "from os import path",
            "del cache",
            "for i in range(3):\n    last = i",
            "print('a')\nLIMIT = 10\n",
            "if True:\n    y = 2",
        ] {
            assert!(changes_module(code), "{code:?} changes the module");
        }
    }

    #[test]
    fn expressions_and_calls_are_evals() {
        for code in [
            "greeting()",
            "6 * 7",
            "COUNT",
            "COUNT == 3",
            "x <= 4 and y >= 2 or z != 1",
            "print('a = b')",
            "f(key='value')",
            "push.kv('m').get('k')",
            "# only a comment = here",
            "'''\nx = 1\n'''",
            "(\n  a\n  == b\n)",
            "greeting(\n    name='x',\n)",
            "match(1)",
        ] {
            assert!(!changes_module(code), "{code:?} only evaluates");
        }
    }

    #[test]
    fn an_editor_patch_is_judged_by_the_source_it_carries() {
        let define = "__import__(\"_push_session\").hot_patch(globals(), \"def f():\\n    return \\\"x\\\"\\n\", 3)\n";
        assert!(changes_module(define));
        let call = "__import__(\"_push_session\").hot_patch(globals(), \"f()\", 7)\n";
        assert!(!changes_module(call));
    }
}
