#!/usr/bin/env bash
# Everything the VS Code extension must pass: clean install from the lockfile, type check,
# build, unit tests, and a packaged .vsix holding the manifest and the entry point.
# Never prompts (stdin is closed); any failure stops it with a non-zero exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec </dev/null

export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

step() { printf '\n== %s\n' "$*"; }

step "npm ci"
rm -rf out ./*.vsix   # nothing stale from an earlier build is tested or packaged
npm ci
step "npm run check"
npm run check
step "npm run build"
npm run build
step "npm test"
npm test
if [[ -n "${PUSH_BIN:-}" || "${PUSH_REQUIRE_LSP:-}" == 1 ]]; then
  step "npm run test:lsp"
  npm run test:lsp
fi

step "npm run package"
npm run package
version=$(node -p 'require("./package.json").version')
name=$(node -p 'require("./package.json").name')
vsix="$name-$version.vsix"
[[ -f "$vsix" ]] || { echo "check.sh: $vsix was not produced" >&2; exit 1; }
listing=$(unzip -l "$vsix")
for want in extension/package.json extension/out/extension.js extension/node_modules/vscode-languageclient/package.json; do
  grep -qF "$want" <<<"$listing" || { echo "check.sh: $vsix lacks $want" >&2; printf '%s\n' "$listing" >&2; exit 1; }
done
for unwanted in extension/src/ extension/out/test/ extension/node_modules/typescript/; do
  if grep -qF "$unwanted" <<<"$listing"; then
    echo "check.sh: $vsix should not contain $unwanted" >&2
    exit 1
  fi
done
step "ok: $vsix ($(wc -c <"$vsix") bytes)"
