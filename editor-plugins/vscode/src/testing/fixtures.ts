// Sample values shared by the unit tests.

import type { EvalOutcome, PushStatus } from '../protocol';

export function outcome(over: Partial<EvalOutcome> = {}): EvalOutcome {
  return {
    ok: true,
    value: '144',
    stdout: '',
    stderr: '',
    error: null,
    traceback: null,
    range: { start: { line: 2, character: 0 }, end: { line: 2, character: 10 } },
    module: null,
    node: 1,
    micros: 420,
    ...over,
  };
}

export function status(over: Partial<PushStatus> = {}): PushStatus {
  return {
    connected: true,
    address: '127.0.0.1:7001',
    node: 1,
    role: 'leader',
    version: 3,
    message: '',
    ...over,
  };
}
