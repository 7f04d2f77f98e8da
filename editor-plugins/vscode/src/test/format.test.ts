import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  CONNECT_HINT,
  anchorLine,
  hasOutput,
  hoverMarkdown,
  inlineResult,
  interruptMessage,
  oneLine,
  serverDownText,
  statusText,
  transcript,
  truncate,
} from '../format';
import { outcome, status } from '../testing/fixtures';

const zeroDiv = outcome({
  ok: false,
  value: null,
  error: 'ZeroDivisionError: division by zero',
  traceback: 'Traceback (most recent call last):\n  File "main.py", line 3, in <module>\nZeroDivisionError: division by zero\n',
});

test('a value is shown after an arrow', () => {
  assert.deepEqual(inlineResult(outcome()), { text: '⇒ 144', isError: false });
});

test('an error is shown in red with its one-line message', () => {
  assert.deepEqual(inlineResult(zeroDiv), { text: '✗ ZeroDivisionError: division by zero', isError: true });
  // Without `error`, the traceback's last line says what went wrong.
  assert.equal(inlineResult({ ...zeroDiv, error: null }).text, '✗ ZeroDivisionError: division by zero');
  assert.equal(inlineResult({ ...zeroDiv, error: null, traceback: null }).text, '✗ evaluation failed');
});

test('statements without a value, and patches, say so', () => {
  assert.equal(inlineResult(outcome({ value: null })).text, '✓');
  assert.equal(inlineResult(outcome({ value: null, module: 'greetings.text' })).text, '⟳ patched into greetings.text');
});

test('printed output is counted, not shown inline', () => {
  assert.equal(inlineResult(outcome({ value: null, stdout: 'a\nb\n' })).text, '✓ · 2 lines of output');
  assert.equal(inlineResult(outcome({ stdout: 'hi\n', stderr: 'warn' })).text, '⇒ 144 · 2 lines of output');
  assert.equal(inlineResult(outcome({ stdout: 'hi' })).text, '⇒ 144 · 1 line of output');
});

test('multi-line and long values become one capped line', () => {
  assert.equal(oneLine("{'a': 1,\n 'b': 2}\n"), "{'a': 1, ⏎ 'b': 2}");
  assert.equal(oneLine('a\r\n\r\nb\tc'), 'a ⏎ b c');
  const long = inlineResult(outcome({ value: 'x'.repeat(500), stdout: '1\n' }), 60);
  assert.equal(long.text.length, 60);
  assert.ok(long.text.endsWith('… · 1 line of output'), long.text);
  assert.equal(truncate('abcdef', 4), 'abc…');
  assert.equal(truncate('abc', 4), 'abc');
});

test('the result goes on the last line of the range, not past its newline', () => {
  const r = (l1: number, c1: number, l2: number, c2: number) => ({
    start: { line: l1, character: c1 },
    end: { line: l2, character: c2 },
  });
  assert.equal(anchorLine(r(3, 0, 5, 12)), 5);
  assert.equal(anchorLine(r(3, 0, 6, 0)), 5);
  assert.equal(anchorLine(r(3, 0, 3, 0)), 3);
});

test('the hover holds the whole value or traceback, and where it ran', () => {
  assert.equal(hoverMarkdown(outcome()), '```python\n144\n```\n\n*node 1 · 0.42 ms*');
  const h = hoverMarkdown({ ...zeroDiv, micros: 12_345, module: 'app' });
  assert.ok(h.startsWith('```text\nTraceback (most recent call last):'), h);
  assert.ok(h.endsWith('*node 1 · 12 ms · in app*'), h);
  assert.ok(hoverMarkdown(outcome({ value: "'```'" })).startsWith('~~~~python\n'));
});

test('the transcript has a header, output, then value or traceback', () => {
  const o = outcome({ stdout: 'hello\n', range: { start: { line: 2, character: 0 }, end: { line: 4, character: 0 } } });
  assert.equal(transcript(o, 'app/main.py'), '── app/main.py:3-4 · node 1 · 0.42 ms\nhello\n144');
  assert.equal(
    transcript({ ...zeroDiv, stdout: 'x\n', stderr: 'w\n' }, 'main.py'),
    '── main.py:3 · node 1 · 0.42 ms\nx\n[stderr]\nw\n' + zeroDiv.traceback!.trimEnd(),
  );
  assert.equal(transcript(outcome({ value: null }), 'm.py'), '── m.py:3 · node 1 · 0.42 ms');
});

test('the output channel is worth showing only for output or errors', () => {
  assert.ok(!hasOutput(outcome()));
  assert.ok(hasOutput(outcome({ stderr: 'w' })));
  assert.ok(hasOutput(zeroDiv));
});

test('the status bar shows node, role and HEAD', () => {
  const t = statusText(status());
  assert.equal(t.text, '$(zap) Push: node 1 · leader · v3');
  assert.equal(t.tooltip, 'Connected to node 1 at 127.0.0.1:7001 (leader), HEAD v3.');
  assert.equal(statusText(status({ version: null, role: null })).text, '$(zap) Push: node 1 · no version');
  assert.equal(statusText(status({ node: null, role: 'follower' })).text, '$(zap) Push: 127.0.0.1:7001 · follower · v3');
});

test('disconnected says so and what to do', () => {
  const t = statusText(status({ connected: false, node: null, role: null, version: null, message: 'connection refused' }));
  assert.equal(t.text, '$(debug-disconnect) Push: disconnected');
  assert.equal(t.tooltip, `connection refused\n\nLast tried 127.0.0.1:7001.\n\n${CONNECT_HINT}`);
  assert.match(CONNECT_HINT, /push up/);
  assert.match(CONNECT_HINT, /push\.address/);
  assert.match(statusText(undefined).text, /connecting/);
  const down = serverDownText('push', 'spawn push ENOENT');
  assert.equal(down.text, '$(error) Push: disconnected');
  assert.match(down.tooltip, /`push lsp`.*spawn push ENOENT/);
  assert.match(down.tooltip, /push\.path/);
});

test('interrupt says whether it stopped something, and what to do when it did not', () => {
  assert.deepEqual(interruptMessage({ ok: true, running: true }), { text: 'Push: interrupted', isError: false });
  assert.deepEqual(interruptMessage({ ok: false, running: false }), { text: 'Push: nothing to interrupt', isError: false });
  assert.deepEqual(interruptMessage({ ok: false }), { text: 'Push: nothing to interrupt', isError: false });
  const stuck = interruptMessage({ ok: false, running: true });
  assert.ok(stuck.isError);
  assert.match(stuck.text, /did not stop.*Restart Language Server/);
});
