import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';

import { anchorLine, inlineResult } from '../format';
import {
  FailureRow,
  FailureView,
  FrameEval,
  appPath,
  clock,
  failureItems,
  findAppRoot,
  frameEvalText,
  frameItems,
  frameOutcome,
  localFile,
  localsText,
} from '../postmortem';

const row: FailureRow = {
  id: '1.1.1.3',
  node: 1,
  worker: 1,
  app: 'main',
  version: 2,
  origin: 'route GET /boom/7',
  at_ms: Date.UTC(2026, 10, 28, 12, 3, 4),
  error: 'ZeroDivisionError: integer division or modulo by zero',
  place: 'main@v2/app.py:14',
};

const view: FailureView = {
  row,
  request: 'GET /boom/7',
  traceback: 'Traceback ...',
  frames: [
    { index: 0, file: 'main@v2/app.py', line: 14, function: 'boom', code: '    return n // scale\n' },
    { index: 1, file: '/usr/lib/python3.11/x.py', line: 9, function: 'call', code: 'f()' },
  ],
  replayable: true,
};

const evaluated = (over: Partial<FrameEval> = {}): FrameEval => ({
  ok: true,
  value: '42',
  type: 'int',
  error: null,
  truncated: null,
  node: 1,
  micros: 300,
  ...over,
});

test('failures are picked by their exception, with origin, version, id and place', () => {
  const [item] = failureItems([row]);
  assert.equal(item.label, '$(error) ZeroDivisionError: integer division or modulo by zero');
  assert.equal(item.description, 'route GET /boom/7 · main@v2');
  assert.equal(item.detail, '1.1.1.3 · node 1 · 12:03:04 UTC · main@v2/app.py:14');
  assert.equal(item.value, row);
  assert.equal(failureItems([{ ...row, version: null, place: '' }])[0].description, 'route GET /boom/7 · main@v?');
  assert.equal(clock(0), '00:00:00');
});

test('frames are numbered with file:line, function and source line', () => {
  const items = frameItems(view);
  assert.deepEqual(
    items.map((i) => [i.label, i.description]),
    [
      ['0: app.py:14 in boom', 'return n // scale'],
      ['1: /usr/lib/python3.11/x.py:9 in call', 'f()'],
    ],
  );
  assert.equal(items[0].detail, 'main@v2/app.py');
});

test("a frame's file is found under the app roots, else as it is, else not at all", () => {
  assert.equal(appPath('main@v12/pkg/mod.py'), 'pkg/mod.py');
  assert.equal(appPath('/usr/lib/python3.11/json/__init__.py'), null);
  assert.equal(appPath('<eval-3>'), null);
  const files = new Set(['/w/b/app.py', '/usr/lib/x.py']);
  const exists = (p: string) => files.has(p);
  assert.equal(localFile('main@v2/app.py', ['/w/a', '/w/b'], exists, path.posix.join), '/w/b/app.py');
  assert.equal(localFile('main@v2/gone.py', ['/w/a', '/w/b'], exists, path.posix.join), null);
  assert.equal(localFile('/usr/lib/x.py', [], exists, path.posix.join), '/usr/lib/x.py');
  assert.equal(localFile('<eval-1>', ['/w/a'], exists, path.posix.join), null);
  const manifests = new Set([path.resolve('/w/a/push.ron')]);
  assert.equal(findAppRoot('/w/a/pkg/sub', (p) => manifests.has(p)), path.resolve('/w/a'));
  assert.equal(findAppRoot('/w/b', (p) => manifests.has(p)), undefined);
});

test('locals are written one per line under the frame', () => {
  const text = localsText(view, view.frames[0], [
    { name: 'n', repr: '7' },
    { name: 'scale', repr: '0' },
  ]);
  assert.equal(
    text,
    '── 1.1.1.3 frame 0: app.py:14 in boom (ZeroDivisionError: integer division or modulo by zero)\n' +
      '  > return n // scale\n  n = 7\n  scale = 0',
  );
  assert.match(localsText(view, view.frames[1], []), /\(no locals\)$/);
});

test("a frame eval is shown inline on the frame's line", () => {
  const o = frameOutcome(evaluated(), 13);
  assert.equal(anchorLine(o.range), 13);
  assert.deepEqual(inlineResult(o), { text: '⇒ 42', isError: false });
  const failed = frameOutcome(evaluated({ ok: false, value: null, error: "NameError: name 'x' is not defined" }), 13);
  assert.deepEqual(inlineResult(failed), { text: "✗ NameError: name 'x' is not defined", isError: true });
  const cut = frameOutcome(evaluated({ value: "'aaa'", truncated: 'cut at 300 of 5000 characters' }), 0);
  assert.equal(cut.value, "'aaa'  [cut at 300 of 5000 characters]");
  assert.equal(
    frameEvalText('1.1.1.3', view.frames[0], 'n * 6', evaluated()),
    '── 1.1.1.3 frame 0 (app.py:14)\n>>> n * 6\n=> 42',
  );
});
