// The "Push: Open REPL" terminal: which program, arguments, environment and directory. Pure;
// file-system lookups come in as a function so tests need no files.

import * as path from 'node:path';
import type { Settings } from './args';

export interface ReplInvocation {
  /** Run directly as the terminal's process, no shell in between. */
  shellPath: string;
  shellArgs: string[];
  /** The token travels in the environment, never on the command line (`ps` shows that). */
  env: Record<string, string>;
  /** Where `push repl` runs; it reads `.push/cluster.ron` and `.push/token` from there. */
  cwd: string | undefined;
}

/** `push repl [--to ADDR]`, with `PUSH_TOKEN` set when a token is configured. */
export function replInvocation(s: Settings, cwd: string | undefined): ReplInvocation {
  return {
    shellPath: s.path,
    shellArgs: s.address ? ['repl', '--to', s.address] : ['repl'],
    env: s.token ? { PUSH_TOKEN: s.token } : {},
    cwd,
  };
}

/** The command line as text, for messages. */
export function replCommandLine(inv: ReplInvocation): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return [inv.shellPath, ...inv.shellArgs].map(quote).join(' ');
}

/** The nearest directory from `start` upwards that holds `.push/` (what `push up` writes), the
 * way `push lsp` finds it; `undefined` when none does. */
export function findPushDir(start: string, isDir: (p: string) => boolean): string | undefined {
  let dir = path.resolve(start);
  for (;;) {
    if (isDir(path.join(dir, '.push'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
