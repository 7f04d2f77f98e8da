import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';

import { DEFAULT_SETTINGS } from '../args';
import { findPushDir, replCommandLine, replInvocation } from '../repl';

test('push repl without an address lets the CLI find .push/ itself', () => {
  const inv = replInvocation(DEFAULT_SETTINGS, '/work/app');
  assert.deepEqual(inv, { shellPath: 'push', shellArgs: ['repl'], env: {}, cwd: '/work/app' });
  assert.equal(replCommandLine(inv), 'push repl');
});

test('a configured address becomes --to; the token goes in the environment only', () => {
  const inv = replInvocation({ path: '/opt/my push/push', address: '10.0.0.5:7001', token: 's3cret' }, undefined);
  assert.deepEqual(inv.shellArgs, ['repl', '--to', '10.0.0.5:7001']);
  assert.deepEqual(inv.env, { PUSH_TOKEN: 's3cret' });
  assert.equal(replCommandLine(inv), "'/opt/my push/push' repl --to 10.0.0.5:7001");
  assert.ok(!replCommandLine(inv).includes('s3cret'));
});

test('.push/ is found from the file upwards, the nearest first', () => {
  const root = path.resolve('/w');
  const dirs = new Set([path.join(root, '.push'), path.join(root, 'a', '.push')]);
  const isDir = (p: string) => dirs.has(p);
  assert.equal(findPushDir(path.join(root, 'a', 'b', 'c'), isDir), path.join(root, 'a'));
  assert.equal(findPushDir(path.join(root, 'x'), isDir), root);
  assert.equal(findPushDir(path.join(root, 'x'), () => false), undefined);
});
