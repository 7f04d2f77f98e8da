//! Top-level statements of a Python file, found from indentation alone (no parser): which
//! statement holds a line (for "eval defun"), and where the top-level defs and classes are
//! (for code lenses).
//!
//! A line starts a top-level statement when it is not blank, not a comment, starts at column
//! 0, and is not a continuation (inside brackets, a triple-quoted string, or after a
//! backslash). Decorators join the statement they decorate; `else`/`elif`/`except`/`finally`
//! join the compound statement before them. Blank and comment lines after a statement's last
//! code line do not belong to it.

/// A top-level statement: lines `start..=end` (0-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub start: usize,
    pub end: usize,
    /// For `def`/`async def`/`class` (decorated or not): the name defined.
    pub defines: Option<Def>,
}

/// What a top-level def or class defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Def {
    pub kind: DefKind,
    pub name: String,
    /// The line of the `def`/`class` keyword (after any decorators).
    pub line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    Function,
    Class,
}

/// Per line: whether it starts inside an unfinished construct of an earlier line.
fn continuation_flags(lines: &[&str]) -> Vec<bool> {
    #[derive(Clone, Copy, PartialEq)]
    enum Str {
        None,
        Single(char),
        Triple(char),
    }
    let mut flags = Vec::with_capacity(lines.len());
    let mut depth: usize = 0;
    let mut string = Str::None;
    let mut backslash = false;
    for line in lines {
        flags.push(depth > 0 || backslash || matches!(string, Str::Triple(_)));
        backslash = false;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match string {
                Str::Single(q) | Str::Triple(q) if c == '\\' => {
                    if i + 1 == chars.len() && matches!(string, Str::Single(_)) {
                        backslash = true; // a single-quoted string continued on the next line
                    }
                    i += 2;
                    let _ = q;
                    continue;
                }
                Str::Single(q) if c == q => string = Str::None,
                Str::Triple(q)
                    if c == q && chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q) =>
                {
                    string = Str::None;
                    i += 3;
                    continue;
                }
                Str::Single(_) | Str::Triple(_) => {}
                Str::None => match c {
                    '#' => break,
                    '\'' | '"' => {
                        if chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c) {
                            string = Str::Triple(c);
                            i += 3;
                            continue;
                        }
                        string = Str::Single(c);
                    }
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' => depth = depth.saturating_sub(1),
                    '\\' if i + 1 == chars.len() => backslash = true,
                    _ => {}
                },
            }
            i += 1;
        }
        // An unterminated single-quoted string ends at the line break (a syntax error that the
        // node reports); do not let it swallow the rest of the file.
        if matches!(string, Str::Single(_)) && !backslash {
            string = Str::None;
        }
    }
    flags
}

fn is_code(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

fn first_word(line: &str) -> &str {
    let end = line
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(line.len());
    &line[..end]
}

fn joins_previous(line: &str) -> bool {
    matches!(first_word(line), "else" | "elif" | "except" | "finally")
}

fn def_of(line: &str) -> Option<(DefKind, String)> {
    let rest = line
        .strip_prefix("async")
        .map(str::trim_start)
        .unwrap_or(line);
    let (kind, rest) = if let Some(r) = rest.strip_prefix("def ") {
        (DefKind::Function, r)
    } else if let Some(r) = rest.strip_prefix("class ") {
        (DefKind::Class, r)
    } else {
        return None;
    };
    let name = first_word(rest.trim_start());
    (!name.is_empty()).then(|| (kind, name.to_string()))
}

/// Every top-level statement of `text`, in order.
pub fn statements(text: &str) -> Vec<Statement> {
    let lines: Vec<&str> = text.lines().collect();
    let cont = continuation_flags(&lines);
    let mut out: Vec<Statement> = Vec::new();
    // Whether the statement being built so far is only decorators.
    let mut decorators_only = false;
    for (i, (&line, &continued)) in lines.iter().zip(&cont).enumerate() {
        if !continued && is_code(line) && !line.starts_with([' ', '\t']) {
            let extend = match out.last() {
                Some(_) if decorators_only => true,
                Some(_) => joins_previous(line),
                None => false,
            };
            if extend {
                if let Some(last) = out.last_mut() {
                    last.end = i;
                    if last.defines.is_none() {
                        last.defines = def_of(line).map(|(kind, name)| Def {
                            kind,
                            name,
                            line: i,
                        });
                    }
                }
            } else {
                out.push(Statement {
                    start: i,
                    end: i,
                    defines: def_of(line).map(|(kind, name)| Def {
                        kind,
                        name,
                        line: i,
                    }),
                });
            }
            decorators_only = line.starts_with('@') && (decorators_only || !extend);
        } else if is_code(line) {
            if let Some(last) = out.last_mut() {
                last.end = i;
            }
        }
    }
    out
}

/// The top-level statement holding `line`. On a blank or comment line between statements it
/// is the one before (as SLIME evaluates the form before point); before the first statement,
/// the first one. None for a file without code.
pub fn statement_at(text: &str, line: usize) -> Option<Statement> {
    let all = statements(text);
    all.iter()
        .rev()
        .find(|s| s.start <= line)
        .or_else(|| all.first())
        .cloned()
}

/// The top-level defs and classes, for code lenses.
pub fn definitions(text: &str) -> Vec<Statement> {
    statements(text)
        .into_iter()
        .filter(|s| s.defines.is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> Vec<(usize, usize)> {
        statements(text).iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn simple_statements_and_defs() {
        let text = "import push\n\nx = 1\n\ndef f(a):\n    return a\n";
        assert_eq!(spans(text), vec![(0, 0), (2, 2), (4, 5)]);
        let defs = definitions(text);
        assert_eq!(defs.len(), 1);
        assert_eq!(
            defs[0].defines,
            Some(Def {
                kind: DefKind::Function,
                name: "f".into(),
                line: 4
            })
        );
    }

    #[test]
    fn decorators_join_their_def() {
        let text = "@push.route('GET', '/')\n@other\nasync def index():\n    return 1\n\nclass C:\n    pass\n";
        let all = statements(text);
        assert_eq!(
            all.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(),
            vec![(0, 3), (5, 6)]
        );
        let def = all[0].defines.clone().expect("def");
        assert_eq!((def.name.as_str(), def.line), ("index", 2));
        assert_eq!(
            all[1].defines.as_ref().map(|d| d.kind),
            Some(DefKind::Class)
        );
    }

    #[test]
    fn blank_and_column_zero_comment_lines_inside_a_def() {
        let text = "def f():\n    a = 1\n\n# commented out at column 0\n    return a\n\n\n# trailing\ny = 2\n";
        assert_eq!(spans(text), vec![(0, 4), (8, 8)]);
        assert_eq!(statement_at(text, 2).map(|s| s.start), Some(0));
        assert_eq!(statement_at(text, 3).map(|s| s.end), Some(4));
        // The blank lines after the def belong to nothing: the def before is chosen.
        assert_eq!(
            statement_at(text, 6).map(|s| (s.start, s.end)),
            Some((0, 4))
        );
        assert_eq!(statement_at(text, 8).map(|s| s.start), Some(8));
    }

    #[test]
    fn continuation_lines_do_not_start_statements() {
        let text = concat!(
            "x = call(1,\n",
            "2)\n",
            "s = \"\"\"\n",
            "def not_a_def():\n",
            "\"\"\"\n",
            "t = 1 + \\\n",
            "2\n",
            "d = {'a': '(',\n",
            "}\n",
            "z = 0  # a ( in a comment\n",
            "w = 1\n",
        );
        assert_eq!(
            spans(text),
            vec![(0, 1), (2, 4), (5, 6), (7, 8), (9, 9), (10, 10)]
        );
        assert!(definitions(text).is_empty());
    }

    #[test]
    fn compound_clauses_join() {
        let text = "try:\n    x = 1\nexcept Exception:\n    x = 2\nelse:\n    pass\nfinally:\n    pass\nif x:\n    pass\nelif y:\n    pass\nprint(x)\n";
        assert_eq!(spans(text), vec![(0, 7), (8, 11), (12, 12)]);
    }

    #[test]
    fn position_before_the_first_statement_and_empty_files() {
        let text = "# header\n\nimport os\n";
        assert_eq!(statement_at(text, 0).map(|s| s.start), Some(2));
        assert_eq!(statement_at("", 0), None);
        assert_eq!(statement_at("# only a comment\n", 0), None);
    }

    #[test]
    fn escaped_quotes_and_docstrings() {
        let text =
            "s = 'it\\'s ('\nclass A:\n    \"\"\"Doc with\nno indent\n\"\"\"\n    x = 1\nb = 2\n";
        assert_eq!(spans(text), vec![(0, 0), (1, 5), (6, 6)]);
    }
}
