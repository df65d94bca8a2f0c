// screen.js: one `screen` request after the patient pauses, and only the newest answer shown.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Screener, SCREEN_DELAY_MS } from '../assets/js/screen.js';
import { flush } from './fake-browser.mjs';

/** A server that answers each `screen` when the test says (`answer(i, reply)` or `fail(i)`). */
function fakeServer() {
  const calls = [];
  const request = (text) => new Promise((resolve, reject) => calls.push({ text, resolve, reject }));
  return { calls, request };
}

function setup() {
  mock.timers.enable({ apis: ['setTimeout'] });
  const server = fakeServer();
  const results = [];
  const s = new Screener({ request: server.request, onResult: (r) => results.push(r) });
  return { server, results, s };
}

test('typing sends one request, after a pause of at least 400 ms, for the latest text', async (t) => {
  t.after(() => mock.timers.reset());
  const { server, results, s } = setup();
  assert.ok(SCREEN_DELAY_MS >= 400);
  for (const text of ['我', '我的电', '我的电话138', '我的电话13812345678']) {
    s.input(text);
    mock.timers.tick(SCREEN_DELAY_MS - 1);
  }
  assert.equal(server.calls.length, 0, 'nothing while the patient keeps typing');
  mock.timers.tick(1);
  assert.deepEqual(server.calls.map((c) => c.text), ['我的电话13812345678']);
  server.calls[0].resolve({ findings: [{ kind: 'phone', start: 4, end: 15 }], redacted: '我的电话***' });
  await flush();
  assert.deepEqual(results, [{ text: '我的电话13812345678', findings: [{ kind: 'phone', start: 4, end: 15 }], redacted: '我的电话***' }]);
  // the same text again (a space added and removed) asks nothing new
  s.input('我的电话13812345678 ');
  mock.timers.tick(SCREEN_DELAY_MS);
  assert.equal(server.calls.length, 1);
});

test('a late answer for an older text is dropped; the newest one is shown', async (t) => {
  t.after(() => mock.timers.reset());
  const { server, results, s } = setup();
  s.input('call 13812345678');
  mock.timers.tick(SCREEN_DELAY_MS);
  s.input('call me');
  mock.timers.tick(SCREEN_DELAY_MS);
  assert.equal(server.calls.length, 2);
  server.calls[1].resolve({ findings: [], redacted: 'call me' });
  await flush();
  server.calls[0].resolve({ findings: [{ kind: 'phone', start: 5, end: 16 }], redacted: 'call ***' });
  await flush();
  assert.deepEqual(results, [{ text: 'call me', findings: [], redacted: 'call me' }]);
});

test('an emptied box clears the warning at once; a failed request shows none', async (t) => {
  t.after(() => mock.timers.reset());
  const { server, results, s } = setup();
  s.input('a@b.cn');
  mock.timers.tick(SCREEN_DELAY_MS);
  server.calls[0].resolve({ findings: [{ kind: 'email', start: 0, end: 6 }], redacted: '***' });
  await flush();
  s.input('   ');
  assert.deepEqual(results.at(-1), null);
  mock.timers.tick(SCREEN_DELAY_MS);
  assert.equal(server.calls.length, 1, 'an empty box is not screened');
  s.input('a@b.cn again');
  mock.timers.tick(SCREEN_DELAY_MS);
  server.calls[1].reject(new Error('not_connected'));
  await flush();
  assert.equal(results.at(-1), null);
  // after a failure the same text is screened again when asked (the connection came back)
  s.flush();
  assert.equal(server.calls.length, 3);
  assert.equal(server.calls[2].text, 'a@b.cn again');
});
