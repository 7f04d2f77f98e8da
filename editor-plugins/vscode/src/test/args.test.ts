import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  fileArgs,
  initializationOptions,
  parseRollbackInput,
  readSettings,
  selectionArgs,
  serverCommand,
} from '../args';

const uri = 'file:///app/main.py';
const p = (line: number, character: number) => ({ line, character });

test('an empty selection sends the cursor position', () => {
  const sel = { start: p(4, 2), end: p(4, 2), active: p(4, 2) };
  assert.deepEqual(selectionArgs(uri, sel), { uri, position: { line: 4, character: 2 } });
});

test('a selection sends its range in document order, not the cursor', () => {
  // Selected bottom-up: the cursor (active) is at the start.
  const sel = { start: p(1, 0), end: p(3, 5), active: p(1, 0), anchor: p(3, 5) };
  const args = selectionArgs(uri, sel);
  assert.deepEqual(args, { uri, range: { start: { line: 1, character: 0 }, end: { line: 3, character: 5 } } });
  assert.ok(!('anchor' in args.range!.start));
});

test('a whole file sends only the uri', () => {
  assert.deepEqual(fileArgs(uri), { uri });
});

test('settings become initializationOptions, blanks left out', () => {
  const read = (v: Record<string, unknown>) => readSettings((k) => v[k]);
  assert.deepEqual(initializationOptions(read({})), {});
  assert.deepEqual(initializationOptions(read({ address: '  ', token: '' })), {});
  assert.deepEqual(initializationOptions(read({ address: ' 10.0.0.5:7001 ', token: 's3cret' })), {
    address: '10.0.0.5:7001',
    token: 's3cret',
  });
  assert.deepEqual(initializationOptions(read({ token: 't' })), { token: 't' });
});

test('the server is `<push.path> lsp`, `push` by default', () => {
  assert.deepEqual(serverCommand(readSettings(() => undefined)), { command: 'push', args: ['lsp'] });
  assert.deepEqual(serverCommand(readSettings((k) => (k === 'path' ? '/opt/push/bin/push' : 42))), {
    command: '/opt/push/bin/push',
    args: ['lsp'],
  });
});

test('rollback input: empty is the previous version, numbers (or v3) pick one', () => {
  assert.deepEqual(parseRollbackInput(''), {});
  assert.deepEqual(parseRollbackInput('  '), {});
  assert.deepEqual(parseRollbackInput('3'), { version: 3 });
  assert.deepEqual(parseRollbackInput(' v12 '), { version: 12 });
  for (const bad of ['-1', '1.5', 'three', 'v']) {
    assert.ok('error' in parseRollbackInput(bad), bad);
  }
});
