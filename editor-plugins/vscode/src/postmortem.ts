// Post-mortem of live failures, without VS Code: the shapes of `push.errors` and `push.pm.*`
// answers, the quick-pick items for failures and frames, where a frame's file is in the
// workspace, locals and frame-eval results as text, and a frame eval as an inline result.
// "Push: Show Errors" and "Push: Eval in Frame" (extension.ts) only move these values around.

import * as path from 'node:path';

import type { EvalOutcome } from './protocol';

/** One kept failure, as `push.errors` lists it (newest first). */
export interface FailureRow {
  id: string;
  node: number;
  worker: number;
  app: string;
  version: number | null;
  origin: string;
  at_ms: number;
  error: string;
  /** The innermost app frame, "file:line". */
  place: string;
}

export interface ErrorsResult {
  rows: FailureRow[];
  missing: { node: number; why: string }[];
}

export interface FrameInfo {
  /** 0 is where the exception was raised. */
  index: number;
  /** `APP@vN/PATH` for a file of the app, else the file as Python names it. */
  file: string;
  line: number;
  function: string;
  code: string;
}

/** `push.pm.open`. */
export interface FailureView {
  row: FailureRow;
  request: string | null;
  traceback: string;
  frames: FrameInfo[];
  replayable: boolean;
}

export interface Local {
  name: string;
  repr: string;
}

/** `push.pm.eval`. */
export interface FrameEval {
  ok: boolean;
  value: string | null;
  type: string | null;
  error: string | null;
  truncated: string | null;
  node: number;
  micros: number;
}

export const PmCommand = {
  errors: 'push.errors',
  open: 'push.pm.open',
  locals: 'push.pm.locals',
  eval: 'push.pm.eval',
  replay: 'push.pm.replay',
} as const;

/** A quick-pick item carrying the value it stands for. */
export interface Pick<T> {
  label: string;
  description: string;
  detail: string;
  value: T;
}

/** "12:03:04" in UTC, from Unix milliseconds. */
export function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/** The failures as quick-pick items: the exception, then where and when. */
export function failureItems(rows: readonly FailureRow[]): Pick<FailureRow>[] {
  return rows.map((r) => ({
    label: `$(error) ${r.error}`,
    description: `${r.origin} · ${r.app}@v${r.version ?? '?'}`,
    detail: `${r.id} · node ${r.node} · ${clock(r.at_ms)} UTC${r.place ? ` · ${r.place}` : ''}`,
    value: r,
  }));
}

/** The frames of an opened failure, innermost first: "0: app.py:14 in boom". */
export function frameItems(view: FailureView): Pick<FrameInfo>[] {
  return view.frames.map((f) => ({
    label: `${f.index}: ${shortFile(f.file)}:${f.line} in ${f.function}`,
    description: f.code.trim(),
    detail: f.file,
    value: f,
  }));
}

/** `main@v3/pkg/m.py` → `pkg/m.py`; other files unchanged. */
export function shortFile(file: string): string {
  return appPath(file) ?? file;
}

/** The path under the app root of a deployed module's file name `APP@vN/PATH`, or null. */
export function appPath(file: string): string | null {
  const m = /^[^/]+@v\d+\/(.+)$/.exec(file);
  return m ? m[1] : null;
}

/** Where a frame's file is here: PATH under the first app root that has it (for `APP@vN/PATH`),
 * else the file itself when it exists (a library), else null. */
export function localFile(
  file: string,
  roots: readonly string[],
  exists: (p: string) => boolean,
  join: (root: string, rel: string) => string,
): string | null {
  const rel = appPath(file);
  if (rel === null) return exists(file) ? file : null;
  for (const root of roots) {
    const candidate = join(root, rel);
    if (exists(candidate)) return candidate;
  }
  return null;
}

/** The app root above `start`: the nearest directory holding `push.ron` (as `push lsp` decides
 * a file belongs to the app); `undefined` when none does. */
export function findAppRoot(start: string, isFile: (p: string) => boolean): string | undefined {
  let dir = path.resolve(start);
  for (;;) {
    if (isFile(path.join(dir, 'push.ron'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The transcript of a frame's locals for the output channel. */
export function localsText(view: FailureView, frame: FrameInfo, locals: readonly Local[]): string {
  const head = `── ${view.row.id} frame ${frame.index}: ${shortFile(frame.file)}:${frame.line} in ${frame.function} (${view.row.error})`;
  const body = locals.length === 0 ? ['  (no locals)'] : locals.map((l) => `  ${l.name} = ${l.repr}`);
  return [head, `  > ${frame.code.trim()}`, ...body].join('\n');
}

/** A frame evaluation as the `EvalOutcome` inline results show, at the frame's 0-based line. */
export function frameOutcome(r: FrameEval, line0: number): EvalOutcome {
  const value = r.value !== null && r.truncated ? `${r.value}  [${r.truncated}]` : r.value;
  return {
    ok: r.ok,
    value: r.ok ? value : null,
    stdout: '',
    stderr: '',
    error: r.error,
    traceback: r.error,
    range: { start: { line: line0, character: 0 }, end: { line: line0, character: 0 } },
    module: null,
    node: r.node,
    micros: r.micros,
  };
}

/** One line for the output channel: the code and what it gave in the frame. */
export function frameEvalText(id: string, frame: FrameInfo, code: string, r: FrameEval): string {
  const result = r.ok ? `=> ${r.value ?? 'None'}` : `✗ ${r.error ?? 'failed'}`;
  return `── ${id} frame ${frame.index} (${shortFile(frame.file)}:${frame.line})\n>>> ${code}\n${result}`;
}
