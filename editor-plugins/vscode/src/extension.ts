// Entry point: wires the language server, the status bar item, inline results and the
// "Push: …" commands. Logic worth testing lives in the pure modules (args, format, repl,
// results, protocol); this file only moves values between them and VS Code.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

import { Settings, fileArgs, parseRollbackInput, readSettings, selectionArgs } from './args';
import { StatusText, hasOutput, interruptMessage, serverDownText, statusText, transcript } from './format';
import { InlineResults } from './inline';
import {
  ErrorsResult,
  FailureView,
  FrameEval,
  FrameInfo,
  Local,
  PmCommand,
  failureItems,
  findAppRoot,
  frameEvalText,
  frameItems,
  frameOutcome,
  localFile,
  localsText,
  shortFile,
} from './postmortem';
import {
  Command,
  DeployResult,
  EvalOutcome,
  InterruptResult,
  RollbackResult,
  evalOutcomeProblems,
  isPushStatus,
} from './protocol';
import { findPushDir, replCommandLine, replInvocation } from './repl';
import { PushServer, describe } from './server';

const REPL_NAME = 'Push REPL';

/** Kept for `deactivate`, which must wait for `push lsp` to stop. */
let running: PushServer | undefined;

function settings(): Settings {
  const config = vscode.workspace.getConfiguration('push');
  return readSettings((key) => config.get(key));
}

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('Push');
  const log = vscode.window.createOutputChannel('Push Language Server');
  const inline = new InlineResults();
  const item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
  item.command = 'push.editor.showStatus';
  const setItem = (t: StatusText) => {
    item.text = t.text;
    item.tooltip = t.tooltip;
    item.show();
  };

  const server = new PushServer(
    {
      status: (s) => setItem(statusText(s)),
      down: (reason) => setItem(serverDownText(settings().path, reason)),
      starting: () => setItem(statusText(undefined)),
      evaluate: (command, arg) => evaluate(command, arg),
    },
    log,
  );

  /** Sends an eval command and shows its outcome inline and in the "Push" channel. */
  async function evaluate(command: string, arg: unknown): Promise<EvalOutcome | undefined> {
    const uri = typeof arg === 'object' && arg !== null && 'uri' in arg ? String(arg.uri) : undefined;
    if (uri === undefined) {
      void vscode.window.showErrorMessage(`Push: ${command} needs an argument object with a "uri"`);
      return undefined;
    }
    const title = command === Command.evalInModule ? 'Push: patching…' : 'Push: evaluating…';
    let result: unknown;
    try {
      result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title }, () =>
        server.request(command, arg as object),
      );
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: ${describe(err)}`);
      return undefined;
    }
    const problems = evalOutcomeProblems(result);
    if (problems.length > 0) {
      log.appendLine(`${command} answered ${JSON.stringify(result)}: ${problems.join('; ')}`);
      void vscode.window.showErrorMessage(`Push: unexpected answer to ${command}: ${problems.join('; ')}`);
      return undefined;
    }
    const outcome = result as EvalOutcome;
    inline.show(uri, outcome);
    output.appendLine(transcript(outcome, vscode.workspace.asRelativePath(vscode.Uri.parse(uri))));
    if (hasOutput(outcome)) output.show(true);
    return outcome;
  }

  /** The active Python editor, or a message saying why there is none. */
  function pythonEditor(): vscode.TextEditor | undefined {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.document.languageId !== 'python') {
      void vscode.window.showWarningMessage('Push: open a Python file first.');
      return undefined;
    }
    return editor;
  }

  async function deploy(): Promise<void> {
    const dirty = vscode.workspace.textDocuments.filter((d) => d.isDirty && d.languageId === 'python');
    if (dirty.length > 0) {
      const save = 'Save All and Deploy';
      const pick = await vscode.window.showWarningMessage(
        `Push deploys the files on disk; ${dirty.length} Python file${dirty.length === 1 ? ' has' : 's have'} unsaved changes.`,
        save,
        'Deploy Saved Files',
      );
      if (pick === undefined) return;
      if (pick === save && !(await vscode.workspace.saveAll(false))) return;
    }
    try {
      const r = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'Push: deploying…' },
        () => server.request<DeployResult>(Command.deploy, {}),
      );
      void vscode.window.showInformationMessage(`Push: deployed v${r.version}${r.summary ? ` — ${r.summary}` : ''}`);
      server.refreshStatus();
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: deploy failed: ${describe(err)}`);
    }
  }

  async function rollback(): Promise<void> {
    const text = await vscode.window.showInputBox({
      title: 'Push: Rollback',
      prompt: 'Move HEAD to version (empty: the version before HEAD)',
      placeHolder: 'e.g. 3',
      validateInput: (t) => {
        const r = parseRollbackInput(t);
        return 'error' in r ? r.error : undefined;
      },
    });
    if (text === undefined) return;
    const arg = parseRollbackInput(text);
    if ('error' in arg) return;
    try {
      const r = await server.request<RollbackResult>(Command.rollback, arg);
      void vscode.window.showInformationMessage(`Push: HEAD is now v${r.version}`);
      server.refreshStatus();
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: rollback failed: ${describe(err)}`);
    }
  }

  async function interrupt(): Promise<void> {
    try {
      const m = interruptMessage(await server.request<InterruptResult>(Command.interrupt, {}));
      if (m.isError) void vscode.window.showWarningMessage(m.text);
      else vscode.window.setStatusBarMessage(m.text, 3000);
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: interrupt failed: ${describe(err)}`);
    }
  }

  function openRepl(): void {
    const existing = vscode.window.terminals.find((t) => t.name === REPL_NAME && t.exitStatus === undefined);
    if (existing) {
      existing.show();
      return;
    }
    // `push repl` reads `.push/` from its working directory; start it where `push up` ran.
    const file = vscode.window.activeTextEditor?.document.uri;
    const folder = (file && vscode.workspace.getWorkspaceFolder(file)) ?? vscode.workspace.workspaceFolders?.[0];
    const start = file?.scheme === 'file' ? path.dirname(file.fsPath) : folder?.uri.fsPath;
    const isDir = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
    const cwd = (start && findPushDir(start, isDir)) ?? folder?.uri.fsPath;
    const inv = replInvocation(settings(), cwd);
    output.appendLine(`── REPL: ${replCommandLine(inv)}${cwd ? ` (in ${cwd})` : ''}`);
    vscode.window
      .createTerminal({ name: REPL_NAME, shellPath: inv.shellPath, shellArgs: inv.shellArgs, env: inv.env, cwd: inv.cwd })
      .show();
  }

  /** The frame last picked in "Push: Show Errors", where "Push: Eval in Frame" evaluates. */
  let current: { view: FailureView; frame: FrameInfo; uri: string | undefined } | undefined;
  const isFile = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;

  /** Where a frame's `APP@vN/PATH` may be: the active file's app root, then the workspace's. */
  function appRoots(): string[] {
    const roots: string[] = [];
    const file = vscode.window.activeTextEditor?.document.uri;
    const fromFile = file?.scheme === 'file' ? findAppRoot(path.dirname(file.fsPath), isFile) : undefined;
    if (fromFile) roots.push(fromFile);
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      const root = findAppRoot(folder.uri.fsPath, isFile) ?? folder.uri.fsPath;
      if (!roots.includes(root)) roots.push(root);
      if (!roots.includes(folder.uri.fsPath)) roots.push(folder.uri.fsPath);
    }
    return roots;
  }

  /** "Push: Show Errors": a quick pick of the kept failures, then of the chosen one's frames. */
  async function showErrors(): Promise<void> {
    let listed: ErrorsResult;
    try {
      listed = await server.request<ErrorsResult>(PmCommand.errors, {});
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: listing failures failed: ${describe(err)}`);
      return;
    }
    for (const m of listed.missing) output.appendLine(`── push errors: node ${m.node} was not asked: ${m.why}`);
    if (listed.rows.length === 0) {
      void vscode.window.showInformationMessage('Push: no failures are kept in the cluster.');
      return;
    }
    const failure = await vscode.window.showQuickPick(failureItems(listed.rows), {
      title: 'Push: Errors (newest first)',
      placeHolder: 'A failure: shows its frames',
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (!failure) return;
    let view: FailureView;
    try {
      view = await server.request<FailureView>(PmCommand.open, { id: failure.value.id });
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: opening ${failure.value.id} failed: ${describe(err)}`);
      return;
    }
    const frame = await vscode.window.showQuickPick(frameItems(view), {
      title: `Push: ${view.row.error} (${view.row.origin})`,
      placeHolder: 'A frame: opens its source and shows its locals; then "Push: Eval in Frame"',
      matchOnDescription: true,
    });
    if (!frame) return;
    await openFrame(view, frame.value);
  }

  /** Opens the frame's source at its line and writes its locals to the "Push" channel. */
  async function openFrame(view: FailureView, frame: FrameInfo): Promise<void> {
    const file = localFile(frame.file, appRoots(), isFile, path.join);
    let uri: string | undefined;
    if (file) {
      const doc = await vscode.workspace.openTextDocument(file);
      const at = new vscode.Position(Math.min(Math.max(0, frame.line - 1), doc.lineCount - 1), 0);
      const editor = await vscode.window.showTextDocument(doc, { preview: true });
      editor.selection = new vscode.Selection(at, at);
      editor.revealRange(new vscode.Range(at, at), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
      uri = doc.uri.toString();
    } else {
      void vscode.window.showWarningMessage(
        `Push: ${frame.file} is not in this workspace (open the app's folder); its locals are in the "Push" output.`,
      );
    }
    current = { view, frame, uri };
    try {
      const locals = await server.request<Local[]>(PmCommand.locals, { id: view.row.id, frame: frame.index });
      output.appendLine(localsText(view, frame, locals));
      output.show(true);
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: reading the locals failed: ${describe(err)}`);
    }
  }

  /** "Push: Eval in Frame": an expression in the picked frame, shown inline and in "Push". */
  async function evalInFrame(): Promise<void> {
    if (!current) {
      void vscode.window.showWarningMessage('Push: pick a failure and a frame with "Push: Show Errors" first.');
      return;
    }
    const { view, frame, uri } = current;
    const code = await vscode.window.showInputBox({
      title: `Push: Eval in frame ${frame.index} of ${view.row.id}`,
      prompt: `In ${frame.function} at ${shortFile(frame.file)}:${frame.line}: its globals and a copy of its locals`,
      placeHolder: 'e.g. n * 2',
    });
    if (!code) return;
    let r: FrameEval;
    try {
      r = await server.request<FrameEval>(PmCommand.eval, { id: view.row.id, frame: frame.index, code });
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: eval in frame failed: ${describe(err)}`);
      return;
    }
    if (uri) inline.show(uri, frameOutcome(r, Math.max(0, frame.line - 1)));
    output.appendLine(frameEvalText(view.row.id, frame, code, r));
    output.show(true);
  }

  const openSettings = 'Open Settings';
  const openPushSettings = () => vscode.commands.executeCommand('workbench.action.openSettings', 'push.');

  async function showStatus(): Promise<void> {
    const restart = 'Restart Language Server';
    if (!server.running) {
      const pick = await vscode.window.showWarningMessage(
        `Push: the language server (\`${settings().path} lsp\`) is not running.`,
        restart,
        openSettings,
      );
      if (pick === restart) await server.start(settings());
      if (pick === openSettings) await openPushSettings();
      return;
    }
    let s: unknown;
    try {
      s = await server.request(Command.status, {});
    } catch (err) {
      void vscode.window.showErrorMessage(`Push: ${describe(err)}`);
      return;
    }
    if (!isPushStatus(s)) {
      void vscode.window.showErrorMessage(`Push: unexpected answer to push.status: ${JSON.stringify(s)}`);
      return;
    }
    const shown = statusText(s);
    setItem(shown);
    const repl = 'Open REPL';
    const pick = await vscode.window.showInformationMessage(shown.tooltip, repl, openSettings);
    if (pick === repl) openRepl();
    if (pick === openSettings) await openPushSettings();
  }

  const command = (id: string, run: () => unknown) => vscode.commands.registerCommand(`push.editor.${id}`, run);
  const withEditor = (run: (e: vscode.TextEditor) => unknown) => () => {
    const editor = pythonEditor();
    return editor && run(editor);
  };

  context.subscriptions.push(
    output,
    log,
    inline,
    item,
    server,
    command(
      'evalSelection',
      withEditor((e) => evaluate(Command.eval, selectionArgs(e.document.uri.toString(), e.selection))),
    ),
    command(
      'evalFile',
      withEditor((e) => evaluate(Command.eval, fileArgs(e.document.uri.toString()))),
    ),
    command(
      'patchFunction',
      withEditor((e) => evaluate(Command.evalInModule, selectionArgs(e.document.uri.toString(), e.selection))),
    ),
    command('deploy', deploy),
    command('rollback', rollback),
    command('interrupt', interrupt),
    command('openRepl', openRepl),
    command('clearResults', () => inline.clear(vscode.window.activeTextEditor?.document.uri.toString())),
    command('showStatus', showStatus),
    command('restartServer', () => server.start(settings())),
    vscode.commands.registerCommand('push.showErrors', showErrors),
    vscode.commands.registerCommand('push.evalInFrame', evalInFrame),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('push')) void server.start(settings());
    }),
  );

  running = server;
  void server.start(settings());
}

export function deactivate(): Promise<void> | undefined {
  return running?.stop();
}
