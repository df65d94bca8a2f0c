// hub.js against a fake socket on mocked time: resume, reconnect rules, requests, dead links.
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { FakeSocket, flush, resetBrowser, watch } from './fake-browser.mjs';
import { Hub, HubError } from '../assets/js/hub.js';

let hub;

/** A started hub on the fake socket; `messages` and `statuses` record what it reported. */
function startHub(options = {}) {
  const messages = [];
  const statuses = [];
  hub = new Hub({
    sessionId: 'sess-1',
    token: 'tok-1',
    onMessage: (m) => messages.push(m),
    onStatus: (s) => statuses.push(s),
    WebSocket: FakeSocket,
    ...options,
  });
  hub.start();
  return { messages, statuses };
}

const socket = (i) => FakeSocket.opened[i];
const lastSocket = () => FakeSocket.opened.at(-1);

/** The hub opens its next socket `ms` from now, and not a millisecond sooner. */
function expectReconnectAfter(ms) {
  const before = FakeSocket.opened.length;
  if (ms > 0) {
    mock.timers.tick(ms - 1);
    assert.equal(FakeSocket.opened.length, before, `no new socket before ${ms} ms`);
  }
  mock.timers.tick(ms > 0 ? 1 : 0);
  assert.equal(FakeSocket.opened.length, before + 1, `a new socket after ${ms} ms`);
}

/** Open the current socket and receive a snapshot at `seq`. */
function synced(seq = 5) {
  lastSocket().accept();
  lastSocket().receive({ type: 'snapshot', seq, session: {}, questions: [] });
}

beforeEach(() => {
  FakeSocket.opened = [];
  resetBrowser();
  // Date.now() must not start at 0: the hub takes `openedAt === 0` for "never opened".
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 });
  mock.method(Math, 'random', () => 0); // jitter off: every wait is its lower bound
});

afterEach(() => {
  hub.stop();
  mock.timers.reset();
  mock.restoreAll();
});

// ---- resuming ----

test('the first connection asks for a snapshot; a reconnect resumes after the last event applied', () => {
  const { messages, statuses } = startHub();
  assert.equal(socket(0).url.pathname, '/api/sessions/sess-1/ws');
  assert.equal(socket(0).url.protocol, 'ws:');
  // The token goes as a subprotocol, never in the URL (proxies log URLs).
  assert.deepEqual(socket(0).protocols, ['oncolive.v1', 'bearer.tok-1']);
  assert.equal(socket(0).url.searchParams.has('token'), false);
  assert.equal(socket(0).url.searchParams.has('since'), false);

  synced(5);
  socket(0).receive({ type: 'question', seq: 6, question: { id: 1 } });
  socket(0).receive({ type: 'votes', seq: 7, votes: [] });
  // `viewers` carries the head seq but is no event: it must not move `since`
  socket(0).receive({ type: 'viewers', seq: 9, count: 3 });
  assert.deepEqual(statuses, ['connecting', 'online']);

  socket(0).drop(1006);
  assert.equal(hub.status, 'reconnecting');
  expectReconnectAfter(250);
  assert.equal(socket(1).url.searchParams.get('since'), '7');

  socket(1).accept();
  socket(1).receive({ type: 'resumed', seq: 7 });
  assert.equal(hub.status, 'online');
  assert.deepEqual(messages.map((m) => m.type), ['snapshot', 'question', 'votes', 'viewers', 'resumed']);
});

test('events at or below the applied seq are dropped, newer ones pass and move since', () => {
  const { messages } = startHub();
  synced(10);
  socket(0).receive({ type: 'question', seq: 9, question: { id: 1 } });
  socket(0).receive({ type: 'question', seq: 10, question: { id: 1 } });
  socket(0).receive({ type: 'question_removed', seq: 11, id: 1 });
  socket(0).receive({ type: 'question_removed', seq: 11, id: 1 });
  assert.deepEqual(messages.map((m) => `${m.type}@${m.seq}`), ['snapshot@10', 'question_removed@11']);
  assert.equal(hub.seq, 11);
});

test('a snapshot in parts is handed on whole, once its last part came, and only then goes online', () => {
  const { messages, statuses } = startHub();
  socket(0).accept();
  socket(0).receive({ type: 'snapshot', seq: 8, session: {}, questions: [{ id: 1 }], my_votes: [], more: true });
  socket(0).receive({ type: 'snapshot_part', seq: 8, questions: [{ id: 2 }, { id: 3 }], my_votes: [2], more: true });
  assert.deepEqual(messages, [], 'nothing before the view is complete');
  assert.equal(hub.status, 'connecting');
  socket(0).receive({ type: 'snapshot_part', seq: 8, questions: [], my_votes: [3], more: false });
  assert.equal(messages.length, 1);
  assert.equal(messages[0].type, 'snapshot');
  assert.equal(messages[0].more, false);
  assert.deepEqual(messages[0].questions.map((q) => q.id), [1, 2, 3]);
  assert.deepEqual(messages[0].my_votes, [2, 3]);
  assert.equal(hub.seq, 8);
  assert.deepEqual(statuses, ['connecting', 'online']);
  // An event after the parts applies on top; a stray part is ignored.
  socket(0).receive({ type: 'snapshot_part', seq: 8, questions: [{ id: 9 }], my_votes: [], more: false });
  socket(0).receive({ type: 'question', seq: 9, question: { id: 4 } });
  assert.deepEqual(messages.map((m) => `${m.type}@${m.seq}`), ['snapshot@8', 'question@9']);
});

test('a snapshot cut off with its socket is dropped; the next socket starts over', () => {
  const { messages } = startHub();
  socket(0).accept();
  socket(0).receive({ type: 'snapshot', seq: 8, session: {}, questions: [{ id: 1 }], my_votes: [], more: true });
  socket(0).drop(4000);
  expectReconnectAfter(0);
  assert.equal(socket(1).url.searchParams.has('since'), false, 'nothing was applied');
  socket(1).accept();
  socket(1).receive({ type: 'snapshot_part', seq: 8, questions: [{ id: 2 }], my_votes: [], more: false });
  assert.deepEqual(messages, [], 'a part of the old snapshot completes nothing');
  socket(1).receive({ type: 'snapshot', seq: 12, session: {}, questions: [{ id: 1 }, { id: 2 }], my_votes: [] });
  assert.deepEqual(messages.map((m) => `${m.type}@${m.seq}`), ['snapshot@12']);
});

test('garbage frames are ignored', () => {
  const { messages } = startHub();
  synced();
  socket(0).onmessage({ data: 'not json' });
  socket(0).receive({ no: 'type' });
  assert.equal(messages.length, 1);
  assert.equal(hub.status, 'online');
});

// ---- reconnecting ----

test('failed opens back off exponentially up to the cap', () => {
  startHub();
  // base 500 ms doubling, capped at 15 s; with no jitter the wait is half the base
  for (const wait of [250, 500, 1000, 2000, 4000, 7500, 7500]) {
    lastSocket().drop(1006);
    expectReconnectAfter(wait);
  }
});

test('a connection that lived a while resets the backoff; a short one does not', () => {
  startHub();
  for (let i = 0; i < 3; i += 1) { // three failures: the next wait would be 2 s
    lastSocket().drop(1006);
    mock.timers.tick(1000);
  }
  assert.equal(FakeSocket.opened.length, 4);
  lastSocket().accept();
  mock.timers.tick(1000); // too short to count as stable
  lastSocket().drop(1006);
  expectReconnectAfter(2000);

  lastSocket().accept();
  mock.timers.tick(6000); // stable
  lastSocket().drop(1006);
  expectReconnectAfter(250);
});

test('4008 (flood) waits at least ten seconds', () => {
  startHub();
  synced();
  socket(0).drop(4008);
  expectReconnectAfter(10_000);
});

test('4000 (too slow) reconnects at once the first time, then backs off', () => {
  startHub();
  synced();
  socket(0).drop(4000);
  expectReconnectAfter(0);
  socket(1).accept();
  socket(1).drop(4000); // a second one in a row: not at once
  expectReconnectAfter(1000);
});

test('1000 (closed by the server) is final', () => {
  startHub();
  synced();
  socket(0).drop(1000);
  assert.equal(hub.status, 'closed');
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.opened.length, 1);
});

test('4001 (expired) asks for a new token and starts over from a snapshot', async () => {
  let asked = 0;
  const { statuses } = startHub({ onExpired: async () => { asked += 1; return 'tok-2'; } });
  synced(5);
  socket(0).drop(4001);
  await flush();
  assert.equal(asked, 1);
  assert.ok(statuses.includes('expired'));
  assert.equal(FakeSocket.opened.length, 2);
  assert.deepEqual(socket(1).protocols, ['oncolive.v1', 'bearer.tok-2']);
  assert.equal(socket(1).url.searchParams.has('since'), false);
});

test('4003 (link replaced by the host) is final and asks for no new token', async () => {
  let asked = 0;
  startHub({ onExpired: async () => { asked += 1; return 'tok-2'; } });
  synced();
  socket(0).drop(4003);
  await flush();
  mock.timers.tick(60_000);
  assert.equal(hub.status, 'revoked');
  assert.equal(asked, 0);
  assert.equal(FakeSocket.opened.length, 1);
});

test('4001 without a new token stays expired', async () => {
  startHub({ onExpired: async () => null });
  synced();
  socket(0).drop(4001);
  await flush();
  mock.timers.tick(60_000);
  assert.equal(hub.status, 'expired');
  assert.equal(FakeSocket.opened.length, 1);
});

test('opens that keep failing ask the probe; a gone session stops the retries', async () => {
  let probes = 0;
  const { statuses } = startHub({ probe: async () => { probes += 1; return 'gone'; } });
  socket(0).drop(1006);
  mock.timers.tick(250);
  socket(1).drop(1006);
  mock.timers.tick(500);
  assert.equal(probes, 0, 'two failures are not yet a pattern');
  socket(2).drop(1006);
  await flush();
  assert.equal(probes, 1);
  assert.equal(statuses.at(-1), 'gone');
  mock.timers.tick(60_000);
  hub.reconnectNow();
  assert.equal(FakeSocket.opened.length, 3);
});

test('a probe that finds the session keeps retrying', async () => {
  startHub({ probe: async () => 'ok' });
  for (let i = 0; i < 3; i += 1) {
    lastSocket().drop(1006);
    await flush();
    mock.timers.tick(1000);
  }
  assert.equal(FakeSocket.opened.length, 4);
});

test('offline devices are told so while the hub keeps trying', () => {
  startHub();
  synced();
  navigator.onLine = false;
  socket(0).drop(1006);
  assert.equal(hub.status, 'offline');
  expectReconnectAfter(250); // navigator.onLine is only a hint
});

// ---- requests ----

test('replies are matched to their requests by req, in any order', async () => {
  startHub();
  synced();
  const a = watch(hub.request({ type: 'vote', question: 1 }));
  const b = watch(hub.request({ type: 'ask', text: 'Is it hereditary?' }));
  const [sentA, sentB] = socket(0).sent;
  assert.equal(sentA.type, 'vote');
  assert.equal(sentA.question, 1);
  assert.equal(sentB.text, 'Is it hereditary?');
  assert.notEqual(sentA.req, sentB.req);

  socket(0).receive({ type: 'ack', req: sentB.req, question: { id: 7 } });
  await flush();
  assert.equal(a.status, 'pending');
  assert.equal(b.status, 'resolved');
  assert.equal(b.value.question.id, 7);

  socket(0).receive({ type: 'error', req: sentA.req, code: 'rate_limited', message: 'slow down', retry_after_ms: 3000 });
  await flush();
  assert.equal(a.status, 'rejected');
  assert.ok(a.value instanceof HubError);
  assert.equal(a.value.code, 'rate_limited');
  assert.equal(a.value.retryAfterMs, 3000);
  assert.equal(a.value.uncertain, false);
  assert.equal(hub.pending.size, 0, 'answered requests are forgotten');
});

test('`screened` answers its `screen` request and is no event (since does not move)', async () => {
  const { messages } = startHub();
  synced(5);
  const before = messages.length;
  const screened = watch(hub.request({ type: 'screen', text: '我的电话13812345678' }));
  const sent = socket(0).last('screen');
  socket(0).receive({ type: 'screened', req: sent.req, findings: [{ kind: 'phone', start: 4, end: 15 }], redacted: '我的电话***' });
  await flush();
  assert.equal(screened.status, 'resolved');
  assert.equal(screened.value.redacted, '我的电话***');
  assert.equal(messages.length, before, 'not handed to the store');
  assert.equal(hub.seq, 5);
});

test('an ack carrying a question is also handed to onMessage (the author\'s own copy)', () => {
  const { messages } = startHub();
  synced();
  hub.request({ type: 'ask', text: 'x' }).catch(() => {});
  socket(0).receive({ type: 'ack', req: socket(0).last('ask').req, seq: 6, question: { id: 3 } });
  assert.equal(messages.at(-1).type, 'ack');
  assert.equal(messages.at(-1).question.id, 3);
});

test('a request without a reply times out as uncertain; a late reply is ignored', async () => {
  const { messages } = startHub();
  synced();
  const r = watch(hub.request({ type: 'ask', text: 'x' }));
  mock.timers.tick(14_999);
  await flush();
  assert.equal(r.status, 'pending');
  mock.timers.tick(1);
  await flush();
  assert.equal(r.status, 'rejected');
  assert.equal(r.value.code, 'timeout');
  assert.equal(r.value.uncertain, true);
  socket(0).receive({ type: 'ack', req: socket(0).last('ask').req });
  assert.equal(messages.length, 1);
  assert.equal(hub.pending.size, 0);
});

test('requests in flight when the socket drops fail as disconnected (uncertain)', async () => {
  startHub();
  synced();
  const r = watch(hub.request({ type: 'ask', text: 'x' }));
  socket(0).drop(1006);
  await flush();
  assert.equal(r.status, 'rejected');
  assert.equal(r.value.code, 'disconnected');
  assert.equal(r.value.uncertain, true);
});

test('requests before the snapshot or while offline fail at once, certain', async () => {
  startHub();
  socket(0).accept(); // open, but no snapshot yet
  await assert.rejects(hub.request({ type: 'ping' }), (e) => e.code === 'not_connected' && !e.uncertain);
  assert.equal(socket(0).sent.length, 0);
  navigator.onLine = false;
  socket(0).drop(1006);
  await assert.rejects(hub.request({ type: 'ping' }), (e) => e.code === 'offline');
});

test('stop() fails what is pending and does not reconnect', async () => {
  startHub();
  synced();
  const r = watch(hub.request({ type: 'ask', text: 'x' }));
  const ws = socket(0);
  hub.stop();
  await flush();
  assert.equal(r.value.code, 'disconnected');
  assert.equal(ws.closedByClient, 1000);
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.opened.length, 1);
});

// ---- dead connections ----

test('a silent server is pinged, and dropped after the silence limit', () => {
  startHub();
  synced();
  mock.timers.tick(20_000);
  assert.ok(socket(0).last('ping'), 'a heartbeat ping');
  mock.timers.tick(20_000);
  assert.equal(FakeSocket.opened.length, 1, '40 s of silence is still within the limit');
  mock.timers.tick(20_000);
  assert.notEqual(socket(0).closedByClient, null, 'the dead socket is closed');
  assert.equal(FakeSocket.opened.length, 2, 'reconnected at once');
  assert.equal(socket(1).url.searchParams.get('since'), '5');
});

test('a server that answers the pings keeps its connection', () => {
  startHub();
  synced();
  for (let i = 0; i < 6; i += 1) {
    mock.timers.tick(20_000);
    const ping = socket(0).last('ping');
    socket(0).receive({ type: 'pong', req: ping.req });
  }
  assert.equal(FakeSocket.opened.length, 1);
  assert.equal(socket(0).closedByClient, null);
});

test('after a network change a ping must be answered within five seconds', () => {
  startHub();
  synced();
  window.dispatchEvent(new Event('online'));
  const ping = socket(0).last('ping');
  assert.ok(ping);
  mock.timers.tick(1000);
  socket(0).receive({ type: 'pong', req: ping.req });
  mock.timers.tick(5000);
  assert.equal(FakeSocket.opened.length, 1, 'answered in time: kept');

  window.dispatchEvent(new Event('online'));
  mock.timers.tick(5000);
  assert.notEqual(socket(0).closedByClient, null, 'unanswered: dropped');
  assert.equal(FakeSocket.opened.length, 2, 'reconnected at once');
});

test('coming back online without a socket reconnects at once', () => {
  startHub();
  synced();
  socket(0).drop(1006);
  mock.timers.tick(100); // still waiting out the backoff
  window.dispatchEvent(new Event('online'));
  assert.equal(FakeSocket.opened.length, 2);
});
