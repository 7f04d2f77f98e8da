// A minimal `push lsp` for client tests: run as `node standin-lsp.js lsp`. It answers the
// contract's commands with values that echo what it received, so a test can see exactly which
// request arrived. STANDIN_NO_COMMANDS=1: advertise no executeCommandProvider (a server that
// only sends lenses).

import { StreamMessageReader, StreamMessageWriter, createMessageConnection } from 'vscode-jsonrpc/node';

import type { EvalOutcome, PushStatus } from '../protocol';

if (process.argv[2] !== 'lsp') {
  process.stderr.write(`usage: standin-lsp lsp (got ${JSON.stringify(process.argv.slice(2))})\n`);
  process.exit(2);
}

const conn = createMessageConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(process.stdout));
let initOptions: unknown;

const status = (): PushStatus => ({
  connected: true,
  address: '127.0.0.1:7001',
  node: 1,
  role: 'leader',
  version: 3,
  message: `initializationOptions ${JSON.stringify(initOptions)}`,
});

conn.onRequest('initialize', (params: { initializationOptions?: unknown }) => {
  initOptions = params.initializationOptions;
  const commands = ['push.eval', 'push.evalInModule', 'push.deploy', 'push.rollback', 'push.interrupt', 'push.status'];
  return {
    capabilities: {
      textDocumentSync: 1,
      codeLensProvider: { resolveProvider: false },
      ...(process.env.STANDIN_NO_COMMANDS === '1' ? {} : { executeCommandProvider: { commands } }),
    },
  };
});

conn.onNotification('initialized', () => void conn.sendNotification('push/status', status()));

conn.onRequest('workspace/executeCommand', (p: { command: string; arguments?: unknown[] }) => {
  const arg = p.arguments?.[0] as Record<string, unknown> | undefined;
  switch (p.command) {
    case 'push.eval':
    case 'push.evalInModule': {
      const outcome: EvalOutcome = {
        ok: true,
        value: JSON.stringify({ command: p.command, arguments: p.arguments }),
        stdout: '',
        stderr: '',
        error: null,
        traceback: null,
        range: { start: { line: 0, character: 0 }, end: { line: 1, character: 0 } },
        module: p.command === 'push.evalInModule' ? 'app' : null,
        node: 1,
        micros: 250,
      };
      return outcome;
    }
    case 'push.deploy':
      return { ok: true, version: 4, summary: JSON.stringify(arg) };
    case 'push.status':
      return status();
    default:
      return { ok: false, received: p };
  }
});

conn.onRequest('textDocument/codeLens', () => []);
conn.onRequest('shutdown', () => null);
conn.onNotification('exit', () => process.exit(0));
conn.listen();
