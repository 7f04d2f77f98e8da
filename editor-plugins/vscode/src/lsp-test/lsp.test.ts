// Drives the real `push lsp` (env PUSH_BIN) over stdio with vscode-jsonrpc, the transport
// under vscode-languageclient, and checks what the extension relies on from the contract:
// initialize without a node, the advertised commands, `push.status`, code lens commands and
// their argument objects, answers within ~2 s on a dead node, and (against a one-node cluster
// started here) evals, patches, `push/status` and the "Push: Show Errors" flow's calls.
//
// `npm run test:lsp`. Without PUSH_BIN it is skipped, or fails when PUSH_REQUIRE_LSP=1.

import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { MessageConnection, StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';

import {
  Command,
  EvalOutcome,
  PushStatus,
  STATUS_NOTIFICATION,
  evalOutcomeProblems,
  pushStatusProblems,
} from '../protocol';
import {
  ErrorsResult,
  FailureView,
  FrameEval,
  Local,
  PmCommand,
  failureItems,
  frameItems,
  frameOutcome,
  localFile,
} from '../postmortem';
import { inlineResult } from '../format';
import { eventually, within } from '../testing/wait';

const BIN = process.env.PUSH_BIN;
const REQUIRED = process.env.PUSH_REQUIRE_LSP === '1';

/** The contract's bound on a request to a dead node is ~2 s; allow for a loaded machine. */
const DEAD_NODE_MS = 3500;

const APP = 'def square(x):\n    return x * x\n\n\n@staticmethod\ndef deco():\n    pass\n\n\nanswer = square(6) + 6\n';

if (!BIN) {
  test('PUSH_BIN points at the push binary', { skip: REQUIRED ? false : 'PUSH_BIN is not set' }, () => {
    assert.fail('PUSH_REQUIRE_LSP=1 but PUSH_BIN is not set: export PUSH_BIN=/path/to/push (a build with `push lsp`)');
  });
} else {
  run(path.resolve(BIN));
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** One `push lsp` process and a JSON-RPC connection to it. */
class Lsp {
  readonly conn: MessageConnection;
  readonly proc: ChildProcess;
  stderr = '';
  exited: Promise<number | null>;
  readonly statuses: PushStatus[] = [];
  readonly diagnostics = new Map<string, unknown[]>();

  constructor(bin: string, cwd: string) {
    const env = { ...process.env };
    delete env.PUSH_ADDR;
    delete env.PUSH_TOKEN;
    this.proc = spawn(bin, ['lsp'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    // A server that died early: its exit is reported by `request`, not as EPIPE.
    this.proc.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
    this.conn = createMessageConnection(new StreamMessageReader(this.proc.stdout!), new StreamMessageWriter(this.proc.stdin!));
    this.conn.onNotification(STATUS_NOTIFICATION, (s: PushStatus) => this.statuses.push(s));
    this.conn.onNotification('textDocument/publishDiagnostics', (p: { uri: string; diagnostics: unknown[] }) =>
      this.diagnostics.set(p.uri, p.diagnostics),
    );
    // Requests a server may send; answer them so it does not wait.
    this.conn.onRequest('window/workDoneProgress/create', () => null);
    this.conn.onRequest('client/registerCapability', () => null);
    this.conn.onRequest('workspace/configuration', (p: { items: unknown[] }) => p.items.map(() => null));
    this.conn.onNotification('window/showMessage', () => undefined);
    this.conn.onNotification('window/logMessage', () => undefined);
    this.conn.listen();
  }

  /** Fails with the server's stderr when it exits early. */
  async request<T>(method: string, params: unknown, ms = DEAD_NODE_MS): Promise<T> {
    const died = this.exited.then((code) => {
      throw new Error(`push lsp exited (code ${code}) during ${method}; its stderr:\n${this.stderr}`);
    });
    // No params at all (not `null`) for requests such as `shutdown`.
    const answer = params === undefined ? this.conn.sendRequest<T>(method) : this.conn.sendRequest<T>(method, params);
    // Whichever loses the race must not become an unhandled rejection.
    answer.catch(() => undefined);
    died.catch(() => undefined);
    return within(ms, method, Promise.race([answer, died]));
  }

  command<T>(command: string, arg: object, ms?: number): Promise<T> {
    return this.request<T>('workspace/executeCommand', { command, arguments: [arg] }, ms);
  }

  async initialize(root: string, initializationOptions: object): Promise<{ capabilities: Record<string, any> }> {
    const result = await this.request<{ capabilities: Record<string, any> }>(
      'initialize',
      {
        processId: process.pid,
        rootUri: pathToFileURL(root).href,
        workspaceFolders: [{ uri: pathToFileURL(root).href, name: 'app' }],
        capabilities: { workspace: { executeCommand: { dynamicRegistration: true } } },
        initializationOptions,
      },
      10_000,
    );
    await this.conn.sendNotification('initialized', {});
    return result;
  }

  async open(uri: string, text: string): Promise<void> {
    await this.conn.sendNotification('textDocument/didOpen', {
      textDocument: { uri, languageId: 'python', version: 1, text },
    });
  }

  /** shutdown + exit, and a clean exit code; only kills a server that is still running. */
  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
      this.conn.dispose();
      return;
    }
    try {
      await this.request('shutdown', undefined, 5000);
      await this.conn.sendNotification('exit');
      // As vscode-languageclient does on stop: end the stream after `exit` (and it kills a
      // server still alive 2 s later, which this test counts as a failure).
      this.proc.stdin!.end();
      const code = await within(5000, 'exit after shutdown', this.exited);
      assert.equal(code, 0, `push lsp exit code after shutdown/exit; stderr:\n${this.stderr}`);
    } finally {
      this.conn.dispose();
      if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
    }
  }
}

function run(bin: string): void {
  describe('push lsp without a reachable node', () => {
    let dir: string;
    let lsp: Lsp;
    let uri: string;
    let caps: Record<string, any>;

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'push-vscode-lsp-'));
      fs.writeFileSync(path.join(dir, 'app.py'), APP);
      uri = pathToFileURL(path.join(dir, 'app.py')).href;
      // A port nobody listens on: the node is dead from the start.
      const address = `127.0.0.1:${await freePort()}`;
      lsp = new Lsp(bin, dir);
      const init = await lsp.initialize(dir, { address, token: 'test-token' });
      caps = init.capabilities;
      await lsp.open(uri, APP);
    });

    after(async () => {
      try {
        await lsp?.close();
      } finally {
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test('initialize lists every contract command and code lenses', () => {
      const commands: string[] = caps.executeCommandProvider?.commands ?? [];
      for (const c of Object.values(Command)) {
        assert.ok(commands.includes(c), `executeCommandProvider.commands lacks ${c}: ${JSON.stringify(commands)}`);
      }
      assert.ok(caps.codeLensProvider, 'no codeLensProvider');
    });

    test('push.status answers quickly with a well-formed, disconnected PushStatus', async () => {
      const s = await lsp.command<PushStatus>(Command.status, {});
      assert.deepEqual(pushStatusProblems(s), [], JSON.stringify(s));
      assert.equal(s.connected, false);
      assert.ok(s.message.length > 0, 'a disconnected status should say why');
    });

    test('code lenses carry push.eval / push.evalInModule with {uri, position}', async () => {
      type Lens = { range: { start: { line: number } }; command?: { command: string; arguments?: unknown[] } };
      const lenses = (await lsp.request<Lens[] | null>('textDocument/codeLens', { textDocument: { uri } })) ?? [];
      const on = (line: number, command: string) =>
        lenses.find((l) => l.range.start.line === line && l.command?.command === command);
      // `def square` on line 0; `deco` with its decorator from line 4.
      for (const line of [0, 4]) {
        for (const command of [Command.eval, Command.evalInModule]) {
          const lens = on(line, command) ?? on(line + 1, command);
          assert.ok(lens, `no ${command} lens near line ${line}: ${JSON.stringify(lenses)}`);
          const args = lens.command!.arguments;
          assert.equal(args?.length, 1, `${command} lens arguments: ${JSON.stringify(args)}`);
          const arg = args![0] as { uri: string; position: { line: number; character: number } };
          assert.equal(decodeURIComponent(arg.uri), decodeURIComponent(uri));
          assert.ok(Number.isInteger(arg.position?.line) && Number.isInteger(arg.position?.character), JSON.stringify(arg));
        }
      }
    });

    test('an eval on a dead node answers within ~2 s', async () => {
      const started = Date.now();
      try {
        const o = await lsp.command<EvalOutcome>(Command.eval, { uri, code: '1 + 1' });
        assert.deepEqual(evalOutcomeProblems(o), [], JSON.stringify(o));
        assert.equal(o.ok, false, 'an eval without a node cannot succeed');
      } catch (err) {
        // A JSON-RPC error is the other allowed answer; a timeout is not.
        assert.ok(!(err instanceof Error && /no answer within/.test(err.message)), String(err));
        assert.ok(String((err as Error).message).length > 0);
      }
      assert.ok(Date.now() - started < DEAD_NODE_MS);
    });
  });

  describe('push lsp against a one-node cluster', () => {
    let dir: string;
    let node: ChildProcess | undefined;
    let nodeLog = '';
    let lsp: Lsp;
    let uri: string;

    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'push-vscode-node-'));
      const app = path.join(dir, 'app');
      fs.mkdirSync(app);
      fs.writeFileSync(path.join(app, 'app.py'), APP);
      uri = pathToFileURL(path.join(app, 'app.py')).href;
      const port = await freePort();
      const data = path.join(dir, 'n1');
      node = spawn(bin, ['node', '--id', '1', '--listen', `127.0.0.1:${port}`, '--data', data], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      node.stdout!.on('data', (d: Buffer) => (nodeLog += d.toString()));
      node.stderr!.on('data', (d: Buffer) => (nodeLog += d.toString()));
      const token = await eventually(30_000, `node token in ${data}/token (node log:\n${nodeLog})`, () => {
        try {
          return fs.readFileSync(path.join(data, 'token'), 'utf8').trim() || undefined;
        } catch {
          return undefined;
        }
      });
      lsp = new Lsp(bin, app);
      await lsp.initialize(app, { address: `127.0.0.1:${port}`, token });
      await lsp.open(uri, APP);
    });

    after(async () => {
      try {
        await lsp?.close();
      } finally {
        node?.kill('SIGTERM');
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test('push/status reports the connected leader', async () => {
      const s = await eventually(20_000, 'a connected push/status', () =>
        lsp.statuses.find((x) => x.connected && x.role === 'leader'),
      );
      assert.deepEqual(pushStatusProblems(s), []);
      assert.equal(s.node, 1);
      const asked = await lsp.command<PushStatus>(Command.status, {});
      assert.equal(asked.connected, true);
    });

    test('eval of code, a position and a range returns EvalOutcomes', async () => {
      const code = await lsp.command<EvalOutcome>(Command.eval, { uri, code: '6 * 7' }, 10_000);
      assert.deepEqual(evalOutcomeProblems(code), [], JSON.stringify(code));
      assert.equal(code.ok, true, JSON.stringify(code));
      assert.equal(code.value, '42');
      assert.equal(code.node, 1);

      const def = await lsp.command<EvalOutcome>(Command.eval, { uri, position: { line: 1, character: 4 } }, 10_000);
      assert.equal(def.ok, true, JSON.stringify(def));
      assert.equal(def.range.start.line, 0, `the whole def: ${JSON.stringify(def.range)}`);
      assert.ok(def.range.end.line >= 1, JSON.stringify(def.range));

      const line = await lsp.command<EvalOutcome>(
        Command.eval,
        { uri, range: { start: { line: 9, character: 0 }, end: { line: 9, character: 22 } } },
        10_000,
      );
      assert.equal(line.ok, true, JSON.stringify(line));
      const value = await lsp.command<EvalOutcome>(Command.eval, { uri, code: 'answer' }, 10_000);
      assert.equal(value.value, '42', JSON.stringify(value));
    });

    test('deploy, then patch a def into the running module', async () => {
      const d = await lsp.command<{ ok: boolean; version: number; summary: string }>(Command.deploy, {}, 20_000);
      assert.equal(d.ok, true, JSON.stringify(d));
      assert.ok(Number.isInteger(d.version) && d.version >= 1, JSON.stringify(d));
      assert.equal(typeof d.summary, 'string');
      await eventually(10_000, `push/status with HEAD v${d.version}`, () =>
        lsp.statuses.find((s) => s.version === d.version),
      );

      const p = await lsp.command<EvalOutcome>(Command.evalInModule, { uri, position: { line: 0, character: 0 } }, 10_000);
      assert.deepEqual(evalOutcomeProblems(p), [], JSON.stringify(p));
      assert.equal(p.ok, true, JSON.stringify(p));
      assert.equal(p.module, 'app');
    });

    test('interrupt stops a running eval, and says when nothing runs', async () => {
      const idle = await lsp.command<{ ok: boolean; running?: boolean }>(Command.interrupt, {});
      assert.equal(idle.ok, false, JSON.stringify(idle));
      assert.equal(idle.running ?? false, false, JSON.stringify(idle));

      const looping = lsp.command<EvalOutcome>(Command.eval, { uri, code: 'while True:\n    pass\n' }, 15_000);
      looping.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 500));
      const stopped = await lsp.command<{ ok: boolean; running?: boolean }>(Command.interrupt, {});
      assert.equal(stopped.ok, true, JSON.stringify(stopped));
      const o = await looping;
      assert.equal(o.ok, false, JSON.stringify(o));
      assert.match(`${o.error}`, /KeyboardInterrupt|interrupt/i);
    });

    test('a failing eval is an error outcome with the exception and a traceback', async () => {
      const o = await lsp.command<EvalOutcome>(Command.eval, { uri, code: 'print("hi")\n1 / 0' }, 10_000);
      assert.deepEqual(evalOutcomeProblems(o), [], JSON.stringify(o));
      assert.equal(o.ok, false);
      assert.match(o.error ?? '', /ZeroDivisionError/);
      assert.match(o.traceback ?? '', /ZeroDivisionError/);
    });

    test('Show Errors: a failing daemon is listed, its frame opened, read and evaluated in', async () => {
      // A daemon that raises: deployed from the file on disk, as "Push: Deploy" does.
      const file = path.join(dir, 'app', 'app.py');
      fs.writeFileSync(file, `${APP}${CRASHER}`);
      const d = await lsp.command<{ ok: boolean }>(Command.deploy, {}, 20_000);
      assert.equal(d.ok, true, JSON.stringify(d));
      let listed: ErrorsResult | undefined;
      const deadline = Date.now() + 30_000;
      while (!listed?.rows.some((r) => r.origin === 'daemon crasher')) {
        assert.ok(Date.now() < deadline, `the daemon's failure never listed: ${JSON.stringify(listed)}`);
        if (listed) await new Promise((r) => setTimeout(r, 200));
        listed = await lsp.command<ErrorsResult>(PmCommand.errors, {}, 10_000);
      }
      const items = failureItems(listed.rows);
      const picked = items.find((i) => i.value.origin === 'daemon crasher')!;
      assert.match(picked.label, /RuntimeError: daemon broke on d-42/);

      const view = await lsp.command<FailureView>(PmCommand.open, { id: picked.value.id }, 10_000);
      const frame = frameItems(view).find((f) => f.value.function === 'crasher');
      assert.ok(frame, `a frame of crasher: ${JSON.stringify(view.frames)}`);
      assert.match(frame.label, /^\d+: app\.py:\d+ in crasher$/);
      // The frame's file is the workspace's app.py, at the raising line.
      assert.equal(localFile(frame.value.file, [path.join(dir, 'app')], fs.existsSync, path.join), file);
      const lines = fs.readFileSync(file, 'utf8').split('\n');
      assert.match(lines[frame.value.line - 1], /raise RuntimeError/);

      const locals = await lsp.command<Local[]>(PmCommand.locals, { id: view.row.id, frame: frame.value.index }, 10_000);
      assert.deepEqual(
        locals.filter((l) => l.name === 'ticket'),
        [{ name: 'ticket', repr: "'d-42'" }],
        JSON.stringify(locals),
      );
      const r = await lsp.command<FrameEval>(
        PmCommand.eval,
        { id: view.row.id, frame: frame.value.index, code: 'ticket.upper()' },
        10_000,
      );
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.deepEqual(inlineResult(frameOutcome(r, frame.value.line - 1)), { text: "⇒ 'D-42'", isError: false });
    });
  });
}

/** Appended to APP by the Show Errors test: a daemon that fails each time it runs. */
const CRASHER =
  '\n\nimport push\n\n\n@push.daemon(on=1)\ndef crasher(ctx):\n    ticket = "d-42"\n    raise RuntimeError("daemon broke on " + ticket)\n';
