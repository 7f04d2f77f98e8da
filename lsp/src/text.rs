//! Document text and LSP positions: UTF-16 `Position`s to byte offsets and back, ranges,
//! dedenting a selection, and the dotted name under the cursor.

use tower_lsp_server::ls_types::{Position, Range};

/// Byte offset where each line starts (lines end at `\n`; a `\r` before it stays in the line).
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// Number of lines (a trailing newline opens one more, empty, line).
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The text of line `n` without its line break; empty past the end.
    pub fn line(&self, n: usize) -> &'a str {
        let Some(&start) = self.starts.get(n) else {
            return "";
        };
        let end = self.starts.get(n + 1).map_or(self.text.len(), |e| e - 1);
        self.text[start..end].trim_end_matches('\r')
    }

    /// Byte offset of `pos`, clamped to the document (a column past the line's end is its end).
    pub fn offset(&self, pos: Position) -> usize {
        let line = pos.line as usize;
        let Some(&start) = self.starts.get(line) else {
            return self.text.len();
        };
        let text = self.line(line);
        let mut units = 0u32;
        for (i, ch) in text.char_indices() {
            if units >= pos.character {
                return start + i;
            }
            units += ch.len_utf16() as u32;
        }
        start + text.len()
    }

    /// The position of byte offset `offset` (clamped; snapped back to a char boundary).
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let character = self.text[start..offset]
            .chars()
            .map(|c| c.len_utf16() as u32)
            .sum();
        Position::new(line as u32, character)
    }

    /// The text inside `range` (clamped).
    pub fn slice(&self, range: Range) -> &'a str {
        let (a, b) = (self.offset(range.start), self.offset(range.end));
        &self.text[a.min(b)..b.max(a)]
    }

    /// The range covering lines `first..=last`, to the end of the last one.
    pub fn lines_range(&self, first: usize, last: usize) -> Range {
        Range::new(
            Position::new(first as u32, 0),
            Position::new(
                last as u32,
                self.line(last).chars().map(|c| c.len_utf16() as u32).sum(),
            ),
        )
    }

    /// Position `chars` Python characters (code points) after `from` on its line.
    pub fn advance_chars(&self, from: Position, chars: usize) -> Position {
        let offset = self.offset(from);
        let rest = &self.text[offset..];
        let bytes: usize = rest.chars().take(chars).map(char::len_utf8).sum();
        self.position(offset + bytes)
    }
}

/// Removes the indentation common to every non-blank line, so a selection from inside a block
/// still evaluates.
pub fn dedent(text: &str) -> String {
    let common = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    if common == 0 {
        return text.to_string();
    }
    text.split_inclusive('\n')
        .map(|l| {
            if l.trim().is_empty() {
                l.trim_start_matches([' ', '\t'])
            } else {
                &l[common..]
            }
        })
        .collect()
}

/// The dotted name around byte offset `offset` on a line (`push.kv` when the cursor is on
/// `kv`), up to the end of the word under the cursor; None off a name.
pub fn dotted_name_at(line: &str, offset: usize) -> Option<String> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let offset = offset.min(line.len());
    let mut end = offset;
    for (i, c) in line[offset..].char_indices() {
        if !is_word(c) {
            end = offset + i;
            break;
        }
        end = offset + i + c.len_utf8();
    }
    let mut start = offset;
    for (i, c) in line[..offset].char_indices().rev() {
        if is_word(c) || c == '.' {
            start = i;
        } else {
            break;
        }
    }
    let name = line[start..end].trim_matches('.');
    let first = name.chars().next()?;
    if first.is_ascii_digit() || name.contains("..") {
        return None;
    }
    Some(name.to_string())
}

/// `text` as a Python string literal (double-quoted, escaped; safe inside generated code).
pub fn py_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "a = 'é😀x'\nb\r\nc";
        let idx = LineIndex::new(text);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.line(1), "b");
        // 'x' is after a 2-unit emoji: a = ' é 😀 → 5 + 1 + 2 = 8
        let x = text.find('x').expect("x");
        assert_eq!(idx.position(x), Position::new(0, 8));
        assert_eq!(idx.offset(Position::new(0, 8)), x);
        assert_eq!(
            idx.offset(Position::new(0, 99)),
            text.find('\n').expect("nl")
        );
        assert_eq!(idx.offset(Position::new(9, 0)), text.len());
        assert_eq!(idx.position(text.len()), Position::new(2, 1));
        let r = Range::new(Position::new(1, 0), Position::new(2, 1));
        assert_eq!(idx.slice(r), "b\r\nc");
        assert_eq!(
            idx.advance_chars(Position::new(0, 5), 2),
            Position::new(0, 8)
        );
    }

    #[test]
    fn dedent_keeps_relative_indentation() {
        assert_eq!(
            dedent("    x = 1\n\n    if x:\n        y = 2\n"),
            "x = 1\n\nif x:\n    y = 2\n"
        );
        assert_eq!(dedent("x\n  y\n"), "x\n  y\n");
    }

    #[test]
    fn dotted_names() {
        let line = "v = push.kv('x').get(key)";
        assert_eq!(dotted_name_at(line, 9).as_deref(), Some("push.kv"));
        assert_eq!(dotted_name_at(line, 5).as_deref(), Some("push"));
        assert_eq!(dotted_name_at(line, 21).as_deref(), Some("key"));
        assert_eq!(dotted_name_at("x = 1.5", 5), None);
        assert_eq!(dotted_name_at("  ", 1), None);
    }

    #[test]
    fn python_literals_escape_everything_risky() {
        assert_eq!(py_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
        assert_eq!(py_str("é"), "\"é\"");
    }
}
