// A stand-in for the `vscode` module, enough for vscode-languageclient to start a server and
// for `server.ts` to run outside VS Code. Commands are real (a map the tests can call, as VS
// Code does when a code lens is clicked); everything else answers with no-ops.
/* eslint-disable @typescript-eslint/no-explicit-any */

type Fn = (...args: any[]) => any;

export const registeredCommands = new Map<string, Fn>();

export class Disposable {
  constructor(private onDispose?: () => void) {}
  dispose(): void {
    this.onDispose?.();
    this.onDispose = undefined;
  }
  static from(...ds: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => ds.forEach((d) => d?.dispose()));
  }
}

export class EventEmitter<T> {
  private listeners = new Set<(e: T) => void>();
  event = (listener: (e: T) => void): Disposable => {
    this.listeners.add(listener);
    return new Disposable(() => this.listeners.delete(listener));
  };
  fire(e: T): void {
    [...this.listeners].forEach((l) => l(e));
  }
  dispose(): void {
    this.listeners.clear();
  }
}

/** A namespace: the given members, and for anything else (`onDid…`, `register…`, `create…`)
 * a function returning a disposable no-op object. */
function namespace(members: Record<string, unknown>): any {
  return new Proxy(members, {
    get: (target, prop: string) => (prop in target ? target[prop] : () => inert()),
  });
}

/** An object whose every method does nothing (and that is not a thenable). */
function inert(): any {
  return new Proxy({}, { get: (_t, prop) => (prop === 'then' ? undefined : () => undefined) });
}

export const outputLines: string[] = [];

function outputChannel(name: string): any {
  const line = (level: string) => (msg: string) => outputLines.push(`${name} ${level} ${msg}`);
  return {
    name,
    append: line('append'),
    appendLine: line('line'),
    replace: line('replace'),
    trace: line('trace'),
    debug: line('debug'),
    info: line('info'),
    warn: line('warn'),
    error: line('error'),
    clear() {},
    show() {},
    hide() {},
    dispose() {},
  };
}

const none = () => new Disposable();

export const version = '1.82.0';
export const env = { appName: 'vscode-mock', language: 'en', openExternal: async () => true };
export class CancellationError extends Error {}
export class CancellationTokenSource {
  token = { isCancellationRequested: false, onCancellationRequested: none };
  cancel(): void {
    this.token.isCancellationRequested = true;
  }
  dispose(): void {}
}
export const ProgressLocation = { SourceControl: 1, Window: 10, Notification: 15 };

export const Uri = {
  parse: (s: string) => ({ scheme: s.split(':')[0], toString: () => s, fsPath: s.replace(/^file:\/\//, '') }),
  file: (p: string) => ({ scheme: 'file', toString: () => `file://${p}`, fsPath: p }),
};

export const commands = namespace({
  registerCommand(id: string, fn: Fn): Disposable {
    if (registeredCommands.has(id)) throw new Error(`command '${id}' already exists`);
    registeredCommands.set(id, fn);
    return new Disposable(() => registeredCommands.delete(id));
  },
  getCommands: async () => [...registeredCommands.keys()],
  executeCommand: async (id: string, ...args: unknown[]) => {
    const fn = registeredCommands.get(id);
    if (!fn) throw new Error(`command '${id}' not found`);
    return fn(...args);
  },
});

/** Settings as `getConfiguration(section).get(key)` returns them, keyed `section.key`. */
export const configuration: Record<string, unknown> = {};

export const workspace = namespace({
  textDocuments: [],
  workspaceFolders: undefined,
  getConfiguration: (section?: string) => ({
    get: (key: string) => configuration[section ? `${section}.${key}` : key],
    has: (key: string) => (section ? `${section}.${key}` : key) in configuration,
    inspect: () => undefined,
  }),
});

export const window = namespace({
  activeTextEditor: undefined,
  visibleTextEditors: [],
  tabGroups: { all: [], onDidChangeTabs: none, onDidChangeTabGroups: none },
  createOutputChannel: outputChannel,
  showErrorMessage: async (msg: string) => void outputLines.push(`showErrorMessage ${msg}`),
  showWarningMessage: async (msg: string) => void outputLines.push(`showWarningMessage ${msg}`),
  showInformationMessage: async (msg: string) => void outputLines.push(`showInformationMessage ${msg}`),
  withProgress: (_opts: unknown, task: Fn) => task({ report() {} }, new CancellationTokenSource().token),
});

export const languages = namespace({
  match: () => 0,
});

/** Any other export (classes the languageclient extends, enums it reads): an empty class
 * whose unknown static members are their own names. */
const stubClass = (): unknown =>
  new Proxy(class {}, { get: (target, prop) => (prop in target ? (target as any)[prop] : String(prop)) });
module.exports = new Proxy(module.exports, {
  get: (target, prop) => (prop in target || typeof prop === 'symbol' ? target[prop] : (target[prop] = stubClass())),
});
