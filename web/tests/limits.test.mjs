// limits.js: fetched once, used everywhere, and no guessing when the fetch fails.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { loadLimits, limit, maxLength, applyMaxLength, resetLimits } from '../assets/js/limits.js';

const SERVED = { question_chars: 500, reason_chars: 200, answer_chars: 2000, name_chars: 40, title_chars: 200, topic_chars: 1000, expert_chars: 100 };

/** A fetch that answers `responses` in turn (an Error is thrown, like a network failure). */
function fakeFetch(...responses) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    const r = responses[Math.min(calls.length, responses.length) - 1];
    if (r instanceof Error) throw r;
    return { ok: r.status === 200, status: r.status, json: async () => r.body };
  };
  fn.calls = calls;
  return fn;
}

beforeEach(resetLimits);

test('the limits are fetched once and then known to every caller', async () => {
  const fetch = fakeFetch({ status: 200, body: SERVED });
  const [a, b] = await Promise.all([loadLimits(fetch), loadLimits(fetch)]);
  await loadLimits(fetch);
  assert.equal(fetch.calls.length, 1);
  assert.equal(fetch.calls[0].url, '/api/limits');
  assert.deepEqual(a, SERVED);
  assert.equal(a, b);
  assert.equal(limit('question_chars'), 500);
  assert.equal(maxLength('reason_chars'), 200);
  const input = {};
  applyMaxLength(input, 'name_chars');
  assert.equal(input.maxLength, 40);
});

test('before they arrive, or when the fetch fails, a limit is unknown (Infinity, no maxlength)', async () => {
  assert.equal(limit('question_chars'), Infinity);
  const fetch = fakeFetch(new TypeError('Failed to fetch'), { status: 200, body: SERVED });
  assert.equal(await loadLimits(fetch), null);
  assert.equal(limit('question_chars'), Infinity);
  assert.equal(maxLength('question_chars'), null);
  const input = { maxLength: -1 };
  applyMaxLength(input, 'question_chars');
  assert.equal(input.maxLength, -1, 'left alone');
  // a failure is not remembered: the next call tries again
  assert.deepEqual(await loadLimits(fetch), SERVED);
  assert.equal(fetch.calls.length, 2);
  assert.equal(limit('question_chars'), 500);
});

test('an error status or a nonsense value is not taken for a limit', async () => {
  assert.equal(await loadLimits(fakeFetch({ status: 503, body: { error: {} } })), null);
  await loadLimits(fakeFetch({ status: 200, body: { question_chars: 'lots', reason_chars: 0, answer_chars: 2.5 } }));
  assert.equal(limit('question_chars'), Infinity);
  assert.equal(limit('reason_chars'), Infinity);
  assert.equal(limit('answer_chars'), Infinity);
  assert.equal(limit('no_such_limit'), Infinity);
});
