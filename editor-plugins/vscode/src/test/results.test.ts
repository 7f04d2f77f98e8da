import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Edit, Placed, afterEdits, withResult } from '../results';

const at = (first: number, last: number, data = `${first}-${last}`): Placed<string> => ({ first, last, data });
const edit = (l1: number, c1: number, l2: number, c2: number, text: string): Edit => ({
  range: { start: { line: l1, character: c1 }, end: { line: l2, character: c2 } },
  text,
});

test('typing on a line drops only the result covering it', () => {
  const rs = [at(0, 0), at(2, 4), at(6, 6)];
  assert.deepEqual(afterEdits(rs, [edit(3, 1, 3, 1, 'x')]), [at(0, 0), at(6, 6)]);
});

test('results below an edit move by the lines it adds or removes', () => {
  const rs = [at(0, 0), at(5, 7)];
  assert.deepEqual(afterEdits(rs, [edit(2, 0, 2, 0, 'a\nb\n')]), [at(0, 0), { ...at(7, 9), data: '5-7' }]);
  assert.deepEqual(afterEdits(rs, [edit(1, 0, 3, 0, '')]), [at(0, 0), { ...at(3, 5), data: '5-7' }]);
});

test('several edits of one event apply bottom-up against the old document', () => {
  const rs = [at(0, 0), at(4, 4), at(9, 9)];
  // Given top-down: a line added at 2 and another at 6; 4 moves by one, 9 by two.
  const out = afterEdits(rs, [edit(2, 0, 2, 0, '\n'), edit(6, 0, 6, 0, '\n')]);
  assert.deepEqual(out.map((r) => [r.first, r.data]), [
    [0, '0-0'],
    [5, '4-4'],
    [11, '9-9'],
  ]);
});

test('a new result replaces the ones it overlaps', () => {
  const rs = [at(0, 0), at(2, 4), at(6, 6)];
  assert.deepEqual(withResult(rs, at(3, 6, 'new')), [at(0, 0), at(3, 6, 'new')]);
  assert.deepEqual(withResult(rs, at(5, 5, 'new')), [...rs, at(5, 5, 'new')]);
});
