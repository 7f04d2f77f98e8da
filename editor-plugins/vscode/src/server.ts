// The `push lsp` process and its language client: start, stop, requests, and routing of the
// server's own commands (code lens clicks) back into the extension.

import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
  TransportKind,
} from 'vscode-languageclient/node';

import { Settings, initializationOptions, serverCommand } from './args';
import { EVAL_COMMANDS, PushStatus, STATUS_NOTIFICATION, isPushStatus } from './protocol';

export interface ServerHooks {
  /** A `push/status` notification (or the answer to `push.status` right after start). */
  status(s: PushStatus): void;
  /** The server is not running: it failed to start or stopped for good. */
  down(reason: string): void;
  /** The server is starting (again). */
  starting(): void;
  /** Runs an eval command (`push.eval`, `push.evalInModule`) and shows its result. Code lens
   * clicks arrive here too, so they get inline results like the extension's own commands. */
  evaluate(command: string, arg: unknown): Promise<unknown>;
}

export class PushServer implements vscode.Disposable {
  private client: LanguageClient | undefined;
  /** Registrations that live as long as one client. */
  private session: vscode.Disposable[] = [];

  constructor(
    private readonly hooks: ServerHooks,
    private readonly log: vscode.OutputChannel,
  ) {}

  async start(settings: Settings): Promise<void> {
    await this.stop();
    this.hooks.starting();
    const { command, args } = serverCommand(settings);
    const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const serverOptions: ServerOptions = {
      command,
      args,
      transport: TransportKind.stdio,
      options: cwd ? { cwd } : {},
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [
        { scheme: 'file', language: 'python' },
        { scheme: 'untitled', language: 'python' },
      ],
      initializationOptions: initializationOptions(settings),
      outputChannel: this.log,
      // Failed requests are reported by the commands themselves, with the server's message.
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      middleware: {
        // The languageclient registers every command the server lists in
        // `executeCommandProvider` as a VS Code command that sends workspace/executeCommand;
        // a clicked code lens runs that command. Eval commands go through `evaluate` instead,
        // which sends the same request and also draws the result.
        executeCommand: (cmd, cmdArgs, next) =>
          EVAL_COMMANDS.has(cmd) ? this.hooks.evaluate(cmd, cmdArgs[0]) : next(cmd, cmdArgs),
      },
    };
    const client = new LanguageClient('push', 'Push Language Server', serverOptions, clientOptions);
    this.client = client;
    this.session.push(
      client.onNotification(STATUS_NOTIFICATION, (s: unknown) => {
        if (isPushStatus(s)) this.hooks.status(s);
        else this.log.appendLine(`ignoring malformed ${STATUS_NOTIFICATION}: ${JSON.stringify(s)}`);
      }),
      client.onDidChangeState((e) => {
        if (e.newState === State.Stopped && this.client === client) {
          this.hooks.down('it stopped (see the "Push Language Server" output)');
        } else if (e.newState === State.Starting) {
          this.hooks.starting();
        }
      }),
    );
    try {
      await client.start();
    } catch (err) {
      if (this.client === client) {
        this.hooks.down(describe(err));
      }
      return;
    }
    await this.registerMissingEvalCommands();
    this.refreshStatus();
  }

  /** If the server sends lenses for eval commands it does not list in `executeCommandProvider`,
   * the languageclient registers nothing for them and a click would fail with "command not
   * found"; register those here so lenses work either way. */
  private async registerMissingEvalCommands(): Promise<void> {
    const known = new Set(await vscode.commands.getCommands(true));
    for (const cmd of EVAL_COMMANDS) {
      if (!known.has(cmd)) {
        this.session.push(vscode.commands.registerCommand(cmd, (arg: unknown) => this.hooks.evaluate(cmd, arg)));
      }
    }
  }

  /** Asks for `push.status` once, in case the first `push/status` came before we listened. */
  refreshStatus(): void {
    this.request('push.status', {}).then(
      (s) => {
        if (isPushStatus(s)) this.hooks.status(s);
      },
      (err) => this.log.appendLine(`push.status failed: ${describe(err)}`),
    );
  }

  get running(): boolean {
    return this.client?.isRunning() ?? false;
  }

  /** workspace/executeCommand with the contract's single argument object. */
  async request<T = unknown>(command: string, arg: object): Promise<T> {
    const client = this.client;
    if (!client || !client.isRunning()) {
      throw new Error('the Push language server is not running: see the status bar item');
    }
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [arg] }) as Promise<T>;
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.session.forEach((d) => d.dispose());
    this.session = [];
    if (client) {
      try {
        await client.stop(2000);
      } catch (err) {
        this.log.appendLine(`stopping the language server: ${describe(err)}`);
      }
    }
  }

  dispose(): void {
    void this.stop();
  }
}

/** An error's message, without a stack. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && 'message' in err) return String(err.message);
  return String(err);
}
