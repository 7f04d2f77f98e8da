// Which inline results survive an edit, and where they move. Pure line arithmetic over the
// edits VS Code reports; the extension turns the survivors back into decorations.

import type { Range } from './protocol';

/** An inline result covering lines `first..last` (the result is drawn after `last`). */
export interface Placed<T> {
  first: number;
  last: number;
  data: T;
}

/** One content change: `range` in the document before the edit, replaced by `text`. */
export interface Edit {
  range: Range;
  text: string;
}

const newlines = (text: string) => (text.match(/\r\n|\r|\n/g) ?? []).length;

/** Results after `edits` (all against the same old document, as in one change event): a
 * result whose lines an edit touches is dropped (it no longer describes the code), those
 * below an edit shift by the lines it added or removed, those above stay. */
export function afterEdits<T>(results: readonly Placed<T>[], edits: readonly Edit[]): Placed<T>[] {
  // Bottom-up, so each edit's line numbers are still valid when it is applied.
  const sorted = [...edits].sort((a, b) => b.range.start.line - a.range.start.line);
  let out = [...results];
  for (const e of sorted) {
    const from = e.range.start.line;
    const to = e.range.end.line;
    const delta = newlines(e.text) - (to - from);
    out = out
      .filter((r) => r.last < from || r.first > to)
      .map((r) => (r.first > to ? { ...r, first: r.first + delta, last: r.last + delta } : r));
  }
  return out;
}

/** Adds `added`, replacing the results whose lines overlap it (re-evaluating a def replaces
 * its old result). */
export function withResult<T>(results: readonly Placed<T>[], added: Placed<T>): Placed<T>[] {
  return [...results.filter((r) => r.last < added.first || r.first > added.last), added];
}
