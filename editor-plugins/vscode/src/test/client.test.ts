// server.ts with the real vscode-languageclient against a stand-in `push lsp` (testing/
// standin-lsp.ts) and a mocked `vscode` module: initializationOptions from settings,
// `push/status`, requests, and — the point — that clicking a server code lens (VS Code running
// the command `push.eval` / `push.evalInModule` with the lens's argument object) reaches the
// extension's eval path, whether or not the server lists those commands.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import Module from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { DEFAULT_SETTINGS } from '../args';
import type { PushStatus } from '../protocol';
import type * as ServerModule from '../server';
import type * as MockModule from '../testing/vscode-mock';
import { eventually } from '../testing/wait';

// Every `require('vscode')` from here on gets the mock.
const mockPath = require.resolve('../testing/vscode-mock');
const resolve = (Module as unknown as { _resolveFilename: (...a: unknown[]) => string })._resolveFilename;
(Module as unknown as { _resolveFilename: (...a: unknown[]) => string })._resolveFilename = function (
  this: unknown,
  request: unknown,
  ...rest: unknown[]
) {
  return request === 'vscode' ? mockPath : resolve.call(this, request, ...rest);
};
const vscode = require('vscode') as typeof MockModule;
const { PushServer } = require('../server') as typeof ServerModule;

/** An executable `push` whose `lsp` subcommand is the stand-in server. */
function fakePush(dir: string, env: Record<string, string> = {}): string {
  const bin = path.join(dir, 'push');
  const vars = Object.entries(env).map(([k, v]) => `${k}=${v} `).join('');
  const standin = require.resolve('../testing/standin-lsp');
  fs.writeFileSync(bin, `#!/bin/sh\n${vars}exec "${process.execPath}" "${standin}" "$@"\n`, { mode: 0o755 });
  return bin;
}

function harness() {
  const statuses: PushStatus[] = [];
  const evaluated: { command: string; arg: unknown }[] = [];
  const down: string[] = [];
  const log = { appendLine: (_: string) => undefined } as never;
  const server = new PushServer(
    {
      status: (s) => statuses.push(s),
      down: (reason) => down.push(reason),
      starting: () => undefined,
      evaluate: async (command, arg) => {
        evaluated.push({ command, arg });
        return { evaluatedBy: 'extension' };
      },
    },
    log,
  );
  return { server, statuses, evaluated, down };
}

const lensArg = { uri: 'file:///app/app.py', position: { line: 0, character: 0 } };

describe('the language client against a stand-in push lsp', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'push-vscode-client-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('settings reach the server; status, requests and lens clicks work', async () => {
    const h = harness();
    await h.server.start({ ...DEFAULT_SETTINGS, path: fakePush(dir), address: '10.0.0.5:7001', token: 's3cret' });
    try {
      assert.deepEqual(h.down, []);
      assert.ok(h.server.running);
      const s = await eventually(5000, 'push/status', () => h.statuses[0]);
      assert.equal(s.message, 'initializationOptions {"address":"10.0.0.5:7001","token":"s3cret"}');

      // The languageclient registered the server's commands; a lens click runs one of them.
      for (const command of ['push.eval', 'push.evalInModule']) {
        assert.ok(vscode.registeredCommands.has(command), `${command} registered`);
        const result = await vscode.commands.executeCommand(command, lensArg);
        assert.deepEqual(result, { evaluatedBy: 'extension' });
      }
      assert.deepEqual(h.evaluated, [
        { command: 'push.eval', arg: lensArg },
        { command: 'push.evalInModule', arg: lensArg },
      ]);

      // Other server commands go straight to the server, one argument object.
      assert.deepEqual(await vscode.commands.executeCommand('push.deploy', { root: '/app' }), {
        ok: true,
        version: 4,
        summary: '{"root":"/app"}',
      });
      // What `evaluate` sends: the contract's single argument object.
      const outcome = await h.server.request<{ value: string }>('push.eval', lensArg);
      assert.deepEqual(JSON.parse(outcome.value), { command: 'push.eval', arguments: [lensArg] });
      assert.equal((await h.server.request<PushStatus>('push.status', {})).node, 1);
    } finally {
      await h.server.stop();
    }
    assert.ok(!h.server.running);
    assert.ok(!vscode.registeredCommands.has('push.eval'), 'commands go away with the client');
  });

  test('lenses still work when the server does not list its commands', async () => {
    const h = harness();
    await h.server.start({ ...DEFAULT_SETTINGS, path: fakePush(dir, { STANDIN_NO_COMMANDS: '1' }) });
    try {
      const s = await eventually(5000, 'push/status', () => h.statuses[0]);
      assert.equal(s.message, 'initializationOptions {}');
      assert.ok(!vscode.registeredCommands.has('push.deploy'));
      await vscode.commands.executeCommand('push.evalInModule', lensArg);
      assert.deepEqual(h.evaluated, [{ command: 'push.evalInModule', arg: lensArg }]);
    } finally {
      await h.server.stop();
    }
    assert.ok(!vscode.registeredCommands.has('push.evalInModule'));
  });

  test('activate registers every contributed command, and keys bind contributed commands', async () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    const contributed: string[] = manifest.contributes.commands.map((c: { command: string }) => c.command);
    vscode.configuration['push.path'] = path.join(dir, 'no-such-push');
    const ext = require('../extension') as typeof import('../extension');
    const context = { subscriptions: [] as { dispose(): unknown }[] };
    ext.activate(context as never);
    try {
      for (const id of contributed) assert.ok(vscode.registeredCommands.has(id), `${id} is contributed but not registered`);
      // The server is not running, so every `push.*` command registered now is the extension's.
      const ours = [...vscode.registeredCommands.keys()].filter((id) => id.startsWith('push.'));
      assert.deepEqual(ours.sort(), [...contributed].sort(), 'registered but not contributed');
      for (const k of manifest.contributes.keybindings) assert.ok(contributed.includes(k.command), k.command);
      // None of ours may collide with a server command the languageclient registers.
      for (const id of contributed) {
        assert.ok(!/^push\.(eval|evalInModule|deploy|rollback|interrupt|status|errors|pm\..*)$/.test(id), id);
      }
      // Every setting the extension reads is declared.
      assert.deepEqual(Object.keys(manifest.contributes.configuration.properties).sort(), ['push.address', 'push.path', 'push.token']);
    } finally {
      await ext.deactivate();
      context.subscriptions.forEach((d) => d.dispose());
      delete vscode.configuration['push.path'];
    }
    assert.ok(![...vscode.registeredCommands.keys()].some((id) => id.startsWith('push.')));
  });

  test('a missing binary reports the server down instead of throwing', async () => {
    const h = harness();
    await h.server.start({ ...DEFAULT_SETTINGS, path: path.join(dir, 'no-such-push') });
    await eventually(5000, 'down', () => h.down[0]);
    assert.ok(!h.server.running);
    await assert.rejects(h.server.request('push.status', {}), /not running/);
    await h.server.stop();
  });
});
