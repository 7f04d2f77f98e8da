// The `push lsp` contract as TypeScript types: command names, argument objects and results.
// Pure (no `vscode` import) so the unit tests and the language-server test share it.

/** LSP position: zero-based line and UTF-16 character, as VS Code counts them too. */
export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

/** workspace/executeCommand names; every one takes ONE argument object in `arguments[0]`. */
export const Command = {
  eval: 'push.eval',
  evalInModule: 'push.evalInModule',
  deploy: 'push.deploy',
  rollback: 'push.rollback',
  interrupt: 'push.interrupt',
  status: 'push.status',
} as const;

/** The commands whose result is an `EvalOutcome` (and the ones code lenses carry). */
export const EVAL_COMMANDS: ReadonlySet<string> = new Set([Command.eval, Command.evalInModule]);

/** Server-to-client notification carrying a `PushStatus`. */
export const STATUS_NOTIFICATION = 'push/status';

/** `push.eval`: `code`, else `range`, else `position` (its top-level statement), else the file. */
export interface EvalArgs {
  uri: string;
  code?: string;
  range?: Range;
  position?: Position;
}

/** `push.evalInModule`: the def/class at `position`, or the `range` text, inside the module. */
export interface EvalInModuleArgs {
  uri: string;
  position?: Position;
  range?: Range;
}

export interface EvalOutcome {
  ok: boolean;
  value: string | null;
  stdout: string;
  stderr: string;
  error: string | null;
  traceback: string | null;
  /** What was evaluated, for placing the inline result. */
  range: Range;
  module: string | null;
  node: number;
  micros: number;
}

export interface DeployArgs {
  root?: string;
}

export interface DeployResult {
  ok: true;
  version: number;
  summary: string;
}

export interface RollbackArgs {
  version?: number;
}

export interface RollbackResult {
  ok: true;
  version: number;
}

/** `ok`: an eval was running and was interrupted; `running`: one was running (CHANGES). */
export interface InterruptResult {
  ok: boolean;
  running?: boolean;
}

export type Role = 'leader' | 'follower' | 'learner' | 'candidate';

export interface PushStatus {
  connected: boolean;
  address: string | null;
  node: number | null;
  role: Role | null;
  version: number | null;
  message: string;
}

/** `{ "address"?, "token"? }`, the first place the server looks for connection settings. */
export interface InitializationOptions {
  address?: string;
  token?: string;
}

// Shape checks for what comes over the wire. Each returns a list of problems (empty: valid),
// so a failing test or a log line says exactly which field is off.

type Check = (v: unknown) => boolean;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNat: Check = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isStr: Check = (v) => typeof v === 'string';
const isBool: Check = (v) => typeof v === 'boolean';
const orNull =
  (c: Check): Check =>
  (v) =>
    v === null || c(v);
const isPosition: Check = (v) => isObject(v) && isNat(v.line) && isNat(v.character);
const isRange: Check = (v) => isObject(v) && isPosition(v.start) && isPosition(v.end);
const isRole: Check = (v) =>
  v === 'leader' || v === 'follower' || v === 'learner' || v === 'candidate';

function problems(v: unknown, fields: Record<string, Check>): string[] {
  if (!isObject(v)) {
    return [`expected an object, got ${JSON.stringify(v)}`];
  }
  return Object.entries(fields)
    .filter(([k, check]) => !check(v[k]))
    .map(([k]) => `field "${k}" is ${k in v ? JSON.stringify(v[k]) : 'missing'}`);
}

export function pushStatusProblems(v: unknown): string[] {
  return problems(v, {
    connected: isBool,
    address: orNull(isStr),
    node: orNull(isNat),
    role: orNull(isRole),
    version: orNull(isNat),
    message: isStr,
  });
}

export function evalOutcomeProblems(v: unknown): string[] {
  return problems(v, {
    ok: isBool,
    value: orNull(isStr),
    stdout: isStr,
    stderr: isStr,
    error: orNull(isStr),
    traceback: orNull(isStr),
    range: isRange,
    module: orNull(isStr),
    node: isNat,
    micros: isNat,
  });
}

export const isPushStatus = (v: unknown): v is PushStatus => pushStatusProblems(v).length === 0;
export const isEvalOutcome = (v: unknown): v is EvalOutcome => evalOutcomeProblems(v).length === 0;
