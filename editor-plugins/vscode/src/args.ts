// Building command arguments and server options from editor state and settings. Pure: the
// extension passes plain objects in (a VS Code `Selection` already has this shape).

import type { EvalArgs, EvalInModuleArgs, InitializationOptions, Position } from './protocol';

/** The `push.*` settings, as read from the configuration. */
export interface Settings {
  path: string;
  address: string;
  token: string;
}

export const DEFAULT_SETTINGS: Settings = { path: 'push', address: '', token: '' };

/** Reads the settings through `get` (VS Code's `WorkspaceConfiguration.get`), trimming blanks. */
export function readSettings(get: (key: keyof Settings) => unknown): Settings {
  const str = (key: keyof Settings): string => {
    const v = get(key);
    return typeof v === 'string' ? v.trim() : '';
  };
  return {
    path: str('path') || DEFAULT_SETTINGS.path,
    address: str('address'),
    token: str('token'),
  };
}

/** Settings to `initializationOptions`: empty settings are left out, so the server falls back
 * to `--to`/env/`.push/` as the contract says. */
export function initializationOptions(s: Settings): InitializationOptions {
  const opts: InitializationOptions = {};
  if (s.address) opts.address = s.address;
  if (s.token) opts.token = s.token;
  return opts;
}

/** How the language server is started: `<push.path> lsp`. */
export function serverCommand(s: Settings): { command: string; args: string[] } {
  return { command: s.path, args: ['lsp'] };
}

/** A selection as VS Code gives it: anchor/active ends in document order plus the cursor. */
export interface SelectionLike {
  start: Position;
  end: Position;
  active: Position;
}

const pos = (p: Position): Position => ({ line: p.line, character: p.character });
const isEmpty = (s: SelectionLike) =>
  s.start.line === s.end.line && s.start.character === s.end.character;

/** `push.eval` / `push.evalInModule` arguments for a selection: its range, or with nothing
 * selected the cursor position (the server picks the top-level statement around it). */
export function selectionArgs(uri: string, sel: SelectionLike): EvalArgs & EvalInModuleArgs {
  return isEmpty(sel)
    ? { uri, position: pos(sel.active) }
    : { uri, range: { start: pos(sel.start), end: pos(sel.end) } };
}

/** `push.eval` arguments for a whole file: just the uri. */
export function fileArgs(uri: string): EvalArgs {
  return { uri };
}

/** The rollback prompt's answer: blank means "the version before HEAD". */
export type RollbackInput = { version?: number } | { error: string };

export function parseRollbackInput(text: string): RollbackInput {
  const t = text.trim().replace(/^v(?=\d)/i, '');
  if (t === '') return {};
  if (!/^\d+$/.test(t)) return { error: 'a version number such as 3 (or empty for the previous one)' };
  return { version: Number(t) };
}
