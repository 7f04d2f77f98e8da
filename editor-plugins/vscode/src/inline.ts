// Inline results: a decoration after each evaluated range, kept per document, moved or dropped
// as the document is edited (the line arithmetic is in `results.ts`).

import * as vscode from 'vscode';

import { anchorLine, hoverMarkdown, inlineResult } from './format';
import type { EvalOutcome } from './protocol';
import { Placed, afterEdits, withResult } from './results';

interface Shown {
  text: string;
  isError: boolean;
  hover: string;
}

const decoration = (color: string) =>
  vscode.window.createTextEditorDecorationType({
    after: { margin: '0 0 0 1.5em', color: new vscode.ThemeColor(color), fontStyle: 'italic' },
    rangeBehavior: vscode.DecorationRangeBehavior.ClosedClosed,
  });

export class InlineResults implements vscode.Disposable {
  private readonly ok = decoration('editorCodeLens.foreground');
  private readonly err = decoration('editorError.foreground');
  private readonly byUri = new Map<string, Placed<Shown>[]>();
  private readonly subscriptions: vscode.Disposable[];

  constructor() {
    this.subscriptions = [
      vscode.workspace.onDidChangeTextDocument((e) => {
        const key = e.document.uri.toString();
        const shown = this.byUri.get(key);
        if (!shown || e.contentChanges.length === 0) return;
        this.byUri.set(key, afterEdits(shown, e.contentChanges));
        this.render(key);
      }),
      vscode.workspace.onDidCloseTextDocument((d) => this.byUri.delete(d.uri.toString())),
      vscode.window.onDidChangeVisibleTextEditors(() => {
        for (const key of this.byUri.keys()) this.render(key);
      }),
    ];
  }

  /** Shows `o` after its range in the document `uri` (as the server or the extension spelled it). */
  show(uri: string, o: EvalOutcome): void {
    const key = normalize(uri);
    const { text, isError } = inlineResult(o);
    const added = { first: o.range.start.line, last: anchorLine(o.range), data: { text, isError, hover: hoverMarkdown(o) } };
    this.byUri.set(key, withResult(this.byUri.get(key) ?? [], added));
    this.render(key);
  }

  /** Removes the results of one document, or of all. */
  clear(uri?: string): void {
    const keys = uri ? [normalize(uri)] : [...this.byUri.keys()];
    for (const key of keys) {
      this.byUri.set(key, []);
      this.render(key);
      this.byUri.delete(key);
    }
  }

  private render(key: string): void {
    const shown = this.byUri.get(key) ?? [];
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document.uri.toString() !== key) continue;
      const doc = editor.document;
      const options = (wantError: boolean): vscode.DecorationOptions[] =>
        shown
          .filter((r) => r.data.isError === wantError && r.last < doc.lineCount)
          .map((r) => ({
            range: new vscode.Range(doc.lineAt(r.last).range.end, doc.lineAt(r.last).range.end),
            hoverMessage: new vscode.MarkdownString(r.data.hover),
            renderOptions: { after: { contentText: r.data.text } },
          }));
      editor.setDecorations(this.ok, options(false));
      editor.setDecorations(this.err, options(true));
    }
  }

  dispose(): void {
    this.subscriptions.forEach((d) => d.dispose());
    this.ok.dispose();
    this.err.dispose();
  }
}

/** One spelling per document: the server may encode a file URI differently from VS Code. */
function normalize(uri: string): string {
  return vscode.Uri.parse(uri).toString();
}
