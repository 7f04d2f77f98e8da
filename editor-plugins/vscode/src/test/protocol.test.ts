import assert from 'node:assert/strict';
import { test } from 'node:test';

import { evalOutcomeProblems, isEvalOutcome, isPushStatus, pushStatusProblems } from '../protocol';
import { outcome, status } from '../testing/fixtures';

test('a well-formed PushStatus and EvalOutcome pass', () => {
  assert.deepEqual(pushStatusProblems(status()), []);
  assert.ok(isPushStatus(status({ connected: false, address: null, node: null, role: null, version: null })));
  assert.deepEqual(evalOutcomeProblems(outcome()), []);
  assert.ok(isEvalOutcome(outcome({ ok: false, value: null, error: 'E', traceback: 'T', module: 'm' })));
});

test('problems name the field that is off', () => {
  assert.deepEqual(pushStatusProblems({ ...status(), role: 'boss' }), ['field "role" is "boss"']);
  const { message: _, ...noMessage } = status();
  assert.deepEqual(pushStatusProblems(noMessage), ['field "message" is missing']);
  assert.deepEqual(evalOutcomeProblems({ ...outcome(), range: { start: { line: 1 } } }), [
    'field "range" is {"start":{"line":1}}',
  ]);
  assert.deepEqual(evalOutcomeProblems(null), ['expected an object, got null']);
  assert.ok(!isEvalOutcome({ ...outcome(), node: -1 }));
});
