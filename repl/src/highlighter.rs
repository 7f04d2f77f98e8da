//! Python syntax colour: keywords, builtins, strings, numbers, comments and decorators.

use nu_ansi_term::{Color, Style};
use reedline::{Highlighter, StyledText};

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "match", "case",
];
const BUILTINS: &[&str] = &[
    "print",
    "len",
    "range",
    "dict",
    "list",
    "set",
    "tuple",
    "str",
    "int",
    "float",
    "bool",
    "bytes",
    "type",
    "isinstance",
    "repr",
    "sorted",
    "sum",
    "min",
    "max",
    "enumerate",
    "zip",
    "map",
    "filter",
    "open",
    "help",
    "dir",
    "getattr",
    "setattr",
    "hasattr",
    "super",
    "self",
    "push",
];

/// Colours Python as it is typed.
pub struct PythonHighlighter;

/// The styled pieces of `line` (a pure function, tested on strings).
pub fn spans(line: &str) -> Vec<(Style, String)> {
    let mut out: Vec<(Style, String)> = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let plain = Style::new();
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let style = if c == '#' {
            i = chars.len();
            Color::DarkGray.italic()
        } else if c == '"' || c == '\'' {
            let quote = c;
            i += 1;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            Color::Green.normal()
        } else if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
            Color::Purple.normal()
        } else if c == '@' && chars[..i].iter().all(|c| c.is_whitespace()) {
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '(' {
                i += 1;
            }
            Color::Yellow.normal()
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if KEYWORDS.contains(&word.as_str()) {
                Color::Magenta.bold()
            } else if BUILTINS.contains(&word.as_str()) {
                Color::Cyan.normal()
            } else {
                plain
            }
        } else {
            i += 1;
            plain
        };
        let text: String = chars[start..i].iter().collect();
        match out.last_mut() {
            Some((s, t)) if *s == style => t.push_str(&text),
            _ => out.push((style, text)),
        }
    }
    out
}

impl Highlighter for PythonHighlighter {
    fn highlight(&self, line: &str, _cursor: usize) -> StyledText {
        let mut styled = StyledText::new();
        for piece in spans(line) {
            styled.push(piece);
        }
        styled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_python() {
        let s = spans("def f(x): return 'a#b' + 42 # note");
        let find = |t: &str| s.iter().find(|(_, x)| x == t).map(|(st, _)| *st);
        assert_eq!(find("def"), Some(Color::Magenta.bold()));
        assert_eq!(find("'a#b'"), Some(Color::Green.normal()));
        assert_eq!(find("42"), Some(Color::Purple.normal()));
        assert_eq!(find("# note"), Some(Color::DarkGray.italic()));
        let joined: String = s.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(joined, "def f(x): return 'a#b' + 42 # note");
        assert_eq!(
            spans("@push.route('GET', '/')")[0],
            (Color::Yellow.normal(), "@push.route".to_string())
        );
    }
}
