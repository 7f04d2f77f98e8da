// Text the extension shows: inline results, the output transcript, the status bar item and
// messages. Pure, so every string is unit-tested.

import type { EvalOutcome, InterruptResult, PushStatus, Range } from './protocol';

/** Longest inline result, in characters; the hover and the output channel hold the rest. */
export const INLINE_MAX = 120;
/** Longest text put in a hover; values are capped on the node too, this keeps hovers usable. */
export const HOVER_MAX = 20_000;

/** Cuts `text` to `max` characters, ending in "…" when it was longer. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, Math.max(0, max - 1)) + '…';
}

/** One line: runs of line breaks become " ⏎ ", tabs become spaces, ends are trimmed. */
export function oneLine(text: string): string {
  return text
    .trim()
    .replace(/\s*(\r\n|\r|\n)+\s*/g, ' ⏎ ')
    .replace(/\t/g, ' ');
}

function countLines(text: string): number {
  const t = text.replace(/(\r\n|\r|\n)$/, '');
  return t === '' ? 0 : t.split(/\r\n|\r|\n/).length;
}

export interface InlineResult {
  text: string;
  isError: boolean;
}

/** An `EvalOutcome` as the one-line decoration shown after the evaluated range:
 * `⇒ 144`, `✓`, `⟳ patched into greetings.text`, `✗ ZeroDivisionError: division by zero`,
 * with ` · 3 lines of output` when the code printed something. */
export function inlineResult(o: EvalOutcome, max = INLINE_MAX): InlineResult {
  const printed = countLines(o.stdout) + countLines(o.stderr);
  const tail = printed === 0 ? '' : ` · ${printed} line${printed === 1 ? '' : 's'} of output`;
  let head: string;
  if (!o.ok) {
    const err = o.error ?? lastLine(o.traceback) ?? 'evaluation failed';
    head = `✗ ${oneLine(err)}`;
  } else if (o.value !== null) {
    head = `⇒ ${oneLine(o.value)}`;
  } else if (o.module !== null) {
    head = `⟳ patched into ${o.module}`;
  } else {
    head = '✓';
  }
  return { text: truncate(head, Math.max(1, max - tail.length)) + tail, isError: !o.ok };
}

function lastLine(text: string | null): string | null {
  if (!text) return null;
  const lines = text.trimEnd().split(/\r?\n/);
  return lines[lines.length - 1] || null;
}

/** "node 1 · 0.42 ms" (or "· in greetings.text"), for the hover and the transcript. */
export function whereAndHowLong(o: EvalOutcome): string {
  const ms = o.micros / 1000;
  const time = ms < 10 ? `${ms.toFixed(2)} ms` : ms < 10_000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`;
  const mod = o.module ? ` · in ${o.module}` : '';
  return `node ${o.node} · ${time}${mod}`;
}

/** Markdown for hovering an inline result: the full value or traceback in a code block. */
export function hoverMarkdown(o: EvalOutcome): string {
  const body = o.ok ? (o.value ?? (o.module ? `patched into ${o.module}` : 'done')) : (o.traceback ?? o.error ?? '');
  const fence = body.includes('```') ? '~~~~' : '```';
  const lang = o.ok && o.value !== null ? 'python' : 'text';
  return `${fence}${lang}\n${truncate(body, HOVER_MAX)}\n${fence}\n\n*${whereAndHowLong(o)}*`;
}

/** Where an inline result goes: the last line of the evaluated range, or the line before when
 * the range ends at the very start of a line (a statement range including its newline). */
export function anchorLine(r: Range): number {
  return r.end.character === 0 && r.end.line > r.start.line ? r.end.line - 1 : r.end.line;
}

/** Whether the output channel deserves attention for this outcome. */
export function hasOutput(o: EvalOutcome): boolean {
  return o.stdout !== '' || o.stderr !== '' || (!o.ok && !!(o.traceback ?? o.error));
}

/** The transcript written to the "Push" output channel for one evaluation:
 * a header naming the file and lines, then stdout, stderr, and the value or the traceback. */
export function transcript(o: EvalOutcome, label: string): string {
  const lines = o.range.start.line === anchorLine(o.range)
    ? `${o.range.start.line + 1}`
    : `${o.range.start.line + 1}-${anchorLine(o.range) + 1}`;
  const out: string[] = [`── ${label}:${lines} · ${whereAndHowLong(o)}`];
  const block = (text: string, prefix = '') => {
    if (text === '') return;
    out.push(prefix + text.replace(/(\r\n|\r|\n)$/, ''));
  };
  block(o.stdout);
  block(o.stderr, o.stdout === '' ? '' : '[stderr]\n');
  if (o.ok) {
    if (o.value !== null) block(o.value);
  } else {
    block(o.traceback ?? o.error ?? 'evaluation failed');
  }
  return out.join('\n');
}

export interface StatusText {
  text: string;
  tooltip: string;
}

export const CONNECT_HINT =
  'Run `push up` in the workspace (the server finds its .push/ directory), ' +
  'or set push.address and push.token in Settings. The server reconnects by itself.';

/** The status bar item for a `PushStatus` (undefined: nothing heard from the server yet). */
export function statusText(s: PushStatus | undefined): StatusText {
  if (!s) {
    return { text: '$(sync~spin) Push: connecting', tooltip: 'Waiting for push lsp to report its node.' };
  }
  if (!s.connected) {
    const why = s.message ? `${s.message}\n\n` : '';
    const where = s.address ? `Last tried ${s.address}.\n\n` : '';
    return { text: '$(debug-disconnect) Push: disconnected', tooltip: `${why}${where}${CONNECT_HINT}` };
  }
  const who = s.node !== null ? `node ${s.node}` : (s.address ?? 'node ?');
  const parts = [who, s.role, s.version !== null ? `v${s.version}` : 'no version'].filter(Boolean);
  const addr = s.address ? ` at ${s.address}` : '';
  const msg = s.message ? `\n${s.message}` : '';
  return {
    text: `$(zap) Push: ${parts.join(' · ')}`,
    tooltip: `Connected to ${who}${addr}${s.role ? ` (${s.role})` : ''}, HEAD ${s.version !== null ? `v${s.version}` : 'none yet'}.${msg}`,
  };
}

/** The status bar item when the language server itself is not running. */
export function serverDownText(path: string, reason: string): StatusText {
  return {
    text: '$(error) Push: disconnected',
    tooltip:
      `The language server (\`${path} lsp\`) is not running: ${reason}\n\n` +
      'Set push.path to the push binary (`cargo install --path .` in the Push checkout puts it ' +
      'on PATH), then run "Push: Restart Language Server".',
  };
}

/** What "Push: Interrupt" reports; `isError` when an eval is running and did not stop. */
export function interruptMessage(r: InterruptResult): { text: string; isError: boolean } {
  if (r.ok) return { text: 'Push: interrupted', isError: false };
  if (r.running) {
    return {
      text: 'Push: the running eval did not stop. Run "Push: Restart Language Server" for a fresh session.',
      isError: true,
    };
  }
  return { text: 'Push: nothing to interrupt', isError: false };
}
