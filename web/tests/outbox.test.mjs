// outbox.js: questions sent while offline are kept, survive a reload and are never sent twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox, normalText } from '../assets/js/outbox.js';

/** localStorage as far as the outbox uses it. */
function memoryStorage() {
  const data = new Map();
  return {
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => data.set(k, String(v)),
    removeItem: (k) => data.delete(k),
    data,
  };
}

const KEY = 'oncolive.outbox.s1';

test('an entry is kept in storage and read back by a new page (a reload)', () => {
  const storage = memoryStorage();
  const box = new Outbox({ key: KEY, storage });
  const e = box.add('  Is a CT scan safe?\t ');
  assert.equal(e.text, 'Is a CT scan safe?');
  assert.equal(e.state, 'queued');
  const again = new Outbox({ key: KEY, storage });
  assert.equal(again.size, 1);
  assert.equal(again.items[0].id, e.id);
  assert.equal(again.items[0].state, 'queued');
});

test('a queued entry is never matched: it cannot be on the server', () => {
  const box = new Outbox({ key: KEY, storage: memoryStorage() });
  box.add('Same text');
  const arrived = box.reconcile([{ id: 9, text: 'Same text' }]);
  assert.deepEqual(arrived, []);
  assert.equal(box.size, 1);
});

test('a sent entry is found in the resumed state by a new id with its text, and forgotten', () => {
  const storage = memoryStorage();
  const box = new Outbox({ key: KEY, storage });
  const e = box.add('How long does chemo take?');
  box.markSending(e.id, [3, 4]);
  // after a reload the known ids are still there
  const page = new Outbox({ key: KEY, storage });
  // question 3 has the same words but was asked before this entry: not it
  const mine = [{ id: 3, text: 'How long does chemo take?' }, { id: 7, text: 'How long does *** take?', original: 'How long does chemo take?' }];
  const arrived = page.reconcile(mine);
  assert.equal(arrived.length, 1);
  assert.equal(arrived[0].question.id, 7);
  assert.equal(page.size, 0);
  assert.equal(storage.data.has(KEY), false);
});

test('a sent entry not on the server stays, to be sent again', () => {
  const box = new Outbox({ key: KEY, storage: memoryStorage() });
  const e = box.add('Question A');
  box.markSending(e.id, [1]);
  assert.deepEqual(box.reconcile([{ id: 1, text: 'Question A' }, { id: 2, text: 'Question B' }]), []);
  assert.equal(box.get(e.id).state, 'sending');
});

test('two entries with the same text are matched to two different questions', () => {
  const box = new Outbox({ key: KEY, storage: memoryStorage() });
  const a = box.add('Twice');
  const b = box.add('Twice');
  box.markSending(a.id, []);
  box.markSending(b.id, []);
  const arrived = box.reconcile([{ id: 5, text: 'Twice' }]);
  assert.equal(arrived.length, 1);
  assert.equal(box.size, 1);
  const rest = box.reconcile([{ id: 5, text: 'Twice' }, { id: 6, text: 'Twice' }]);
  // entry b knew nothing: 5 is taken by nobody now, but b matches the first new one
  assert.equal(rest.length, 1);
  assert.equal(box.size, 0);
});

test('requeue and remove', () => {
  const box = new Outbox({ key: KEY, storage: memoryStorage() });
  const e = box.add('x');
  box.markSending(e.id, [1]);
  box.requeue(e.id);
  assert.equal(box.get(e.id).state, 'queued');
  assert.equal(box.get(e.id).known, null);
  box.remove(e.id);
  assert.equal(box.size, 0);
});

test('broken storage content is ignored', () => {
  const storage = memoryStorage();
  storage.setItem(KEY, '{not json');
  assert.equal(new Outbox({ key: KEY, storage }).size, 0);
  storage.setItem(KEY, JSON.stringify([{ id: 1 }, { id: 'ok', text: 't', state: 'queued' }]));
  assert.equal(new Outbox({ key: KEY, storage }).size, 1);
});

test('normalText matches the server: CRLF and U+2028 as LF, tabs as spaces, trimmed', () => {
  assert.equal(normalText(' a\r\nb\u2028c\td '), 'a\nb\nc d');
});

test('entries as cards for "my questions"', () => {
  const box = new Outbox({ key: KEY, storage: memoryStorage(), now: () => Date.parse('2026-12-02T10:00:00Z') });
  const e = box.add('Card');
  box.add('Other');
  box.markSending(e.id, []);
  const cards = box.asQuestions('Zhang');
  assert.deepEqual(cards.map((c) => c.status), ['sending', 'queued']);
  assert.equal(cards[0].author, 'Zhang');
  assert.equal(cards[0].asked_at, '2026-12-02T10:00:00.000Z');
});

test('entries that can never be sent are shown as not sent, with the reason, and dropped from storage', () => {
  const storage = memoryStorage();
  const box = new Outbox({ key: KEY, storage });
  const queued = box.add('Typed offline');
  const sent = box.add('On the socket when it dropped');
  box.markSending(sent.id, [1]);
  const arrived = box.add('Arrived before the end');
  box.markSending(arrived.id, [1]);
  // the session ended meanwhile: the one found on the server arrived, the rest never will
  assert.deepEqual(box.reconcile([{ id: 1, text: 'Earlier' }, { id: 2, text: 'Arrived before the end' }]).map((a) => a.entry.id), [arrived.id]);
  const given = box.abandon('ended');
  assert.deepEqual(given.map((e) => e.id), [queued.id, sent.id]);
  assert.equal(box.size, 0, 'nothing left to send');
  assert.equal(storage.getItem(KEY), null, 'gone from storage');
  assert.equal(new Outbox({ key: KEY, storage }).size, 0, 'a reload does not bring them back');
  const cards = box.asQuestions('Li');
  assert.deepEqual(cards.map((q) => [q.text, q.status, q.reason]), [
    ['Typed offline', 'unsent', 'ended'],
    ['On the socket when it dropped', 'unsent', 'ended'],
  ]);
  assert.ok(cards.every((q) => q.local && q.author === 'Li'));
  assert.deepEqual(box.abandon('ended'), [], 'given up once');
});

test('a question typed after giving up is kept and sent as usual; the given-up ones stay shown', () => {
  const box = new Outbox({ key: KEY, storage: memoryStorage() });
  box.add('Never sent');
  box.abandon('revoked');
  const next = box.add('A new one');
  assert.equal(box.size, 1);
  assert.deepEqual(box.asQuestions().map((q) => [q.text, q.status, q.reason]), [
    ['Never sent', 'unsent', 'revoked'],
    ['A new one', 'queued', undefined],
  ]);
  box.remove(next.id);
  assert.equal(box.asQuestions().length, 1);
});
