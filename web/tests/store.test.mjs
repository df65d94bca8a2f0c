// store.js: how snapshot and events become the state a page shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionStore, queueOrder, newestFirst } from '../assets/js/store.js';

const ME = 'patient-me';
const OTHER = 'patient-other';

/** A question as the server sends it; `author_id` only on the author's own (or staff's) copy. */
function q(id, fields = {}) {
  return { id, text: `question ${id}`, status: 'approved', votes: 0, pinned: false, asked_at: `2026-12-01T10:00:${String(id).padStart(2, '0')}Z`, ...fields };
}

function snapshot(fields = {}) {
  return { type: 'snapshot', seq: 10, session: { id: 's', state: 'live' }, you: { id: ME }, viewers: 4, video: 'waiting', questions: [], my_votes: [], ...fields };
}

/** A store with the snapshot applied and every change it reports recorded in `changes`. */
function storeWith(snap = snapshot()) {
  const store = new SessionStore();
  const changes = [];
  store.subscribe((what) => changes.push(what));
  store.apply(snap);
  return { store, changes };
}

const ids = (list) => list.map((x) => x.id);

test('a snapshot sets everything and marks the store loaded', () => {
  const { store, changes } = storeWith(snapshot({
    questions: [q(1, { author_id: ME, status: 'pending' }), q(2), q(3, { status: 'answered' })],
    my_votes: [2],
  }));
  assert.equal(store.loaded, true);
  assert.deepEqual(changes, ['snapshot']);
  assert.equal(store.session.state, 'live');
  assert.equal(store.viewers, 4);
  assert.equal(store.video, 'waiting');
  assert.equal(store.questions.size, 3);
  assert.ok(store.myVotes.has(2));
  assert.deepEqual(ids(store.mine()), [1]);
});

test('a new snapshot replaces the old state (a resync forgets what is gone)', () => {
  const { store } = storeWith(snapshot({ questions: [q(1, { author_id: ME }), q(2)], my_votes: [2] }));
  store.apply(snapshot({ seq: 20, questions: [q(2, { votes: 5 })], my_votes: [] }));
  assert.deepEqual([...store.questions.keys()], [2]);
  assert.equal(store.questions.get(2).votes, 5);
  assert.equal(store.myVotes.size, 0);
  assert.deepEqual(store.mine(), []);
});

test('question events add and replace questions', () => {
  const { store, changes } = storeWith();
  store.apply({ type: 'question', seq: 11, question: q(5) });
  store.apply({ type: 'question', seq: 12, question: q(5, { text: 'edited', edited: true }) });
  assert.equal(store.questions.get(5).text, 'edited');
  assert.deepEqual(changes, ['snapshot', 'questions', 'questions']);
});

test('an older copy never overwrites a newer one (ordering by seq)', () => {
  const { store } = storeWith();
  store.apply({ type: 'question', seq: 14, question: q(5, { status: 'answering' }) });
  // the ask's ack raced the event and arrives late, carrying the copy of seq 12
  store.apply({ type: 'ack', seq: 12, question: q(5, { status: 'pending' }) });
  assert.equal(store.questions.get(5).status, 'answering');
  store.apply({ type: 'question', seq: 15, question: q(5, { status: 'answered' }) });
  assert.equal(store.questions.get(5).status, 'answered');
});

test('a snapshot copy counts as its seq: an event older than the snapshot is ignored', () => {
  const { store } = storeWith(snapshot({ seq: 10, questions: [q(1, { status: 'answered' })] }));
  store.apply({ type: 'ack', seq: 9, question: q(1, { status: 'approved' }) });
  assert.equal(store.questions.get(1).status, 'answered');
});

test('my own question stays mine after it turns into the public copy without author_id', () => {
  const { store } = storeWith();
  // the ask's ack carries the author's copy
  store.apply({ type: 'ack', seq: 11, question: q(7, { author_id: ME, status: 'pending' }) });
  // approval broadcasts the public copy: no author_id
  store.apply({ type: 'question', seq: 12, question: q(7, { status: 'approved' }) });
  store.apply({ type: 'question', seq: 13, question: q(8, { status: 'approved' }) });
  store.apply({ type: 'question', seq: 14, question: q(9, { author_id: OTHER }) });
  assert.deepEqual(ids(store.mine()), [7]);
  assert.equal(store.isMine(store.questions.get(7)), true);
});

test('mine() lists newest first, whatever the status', () => {
  const { store } = storeWith(snapshot({
    questions: [q(1, { author_id: ME, status: 'answered' }), q(3, { author_id: ME, status: 'pending' }), q(2, { author_id: ME, status: 'rejected' })],
  }));
  assert.deepEqual(ids(store.mine()), [3, 2, 1]);
});

test('question_removed deletes other people\'s questions and keeps mine as rejected', () => {
  const { store, changes } = storeWith(snapshot({ questions: [q(1, { author_id: ME }), q(2)] }));
  store.apply({ type: 'question_removed', seq: 11, id: 2 });
  store.apply({ type: 'question_removed', seq: 12, id: 1 });
  assert.equal(store.questions.has(2), false);
  assert.equal(store.questions.get(1).status, 'rejected');
  assert.deepEqual(ids(store.mine()), [1]);
  assert.deepEqual(changes.slice(1), ['questions', 'questions']);
});

test('a rejected copy with its reason is not overwritten by the removal', () => {
  const { store } = storeWith();
  store.apply({ type: 'question', seq: 11, question: q(4, { author_id: ME, status: 'rejected', reason: 'Personal details' }) });
  store.apply({ type: 'question_removed', seq: 11, id: 4 });
  assert.equal(store.questions.get(4).reason, 'Personal details');
});

test('votes events update counts and skip unknown ids', () => {
  const { store, changes } = storeWith(snapshot({ questions: [q(1, { votes: 1 }), q(2, { votes: 2 })] }));
  store.apply({ type: 'votes', seq: 11, votes: [{ id: 1, votes: 9 }, { id: 99, votes: 3 }] });
  assert.equal(store.questions.get(1).votes, 9);
  assert.equal(store.questions.get(2).votes, 2);
  assert.equal(store.questions.has(99), false);
  assert.equal(changes.at(-1), 'votes');
});

test('the queue: approved and answering only, pinned first, then votes, then older, then id', () => {
  const { store } = storeWith(snapshot({
    questions: [
      q(1, { votes: 3 }),
      q(2, { votes: 3, asked_at: '2026-12-01T09:00:00Z' }), // older than 1 with the same votes
      q(3, { votes: 0, pinned: true }),
      q(4, { votes: 8, status: 'answering' }),
      q(5, { votes: 50, status: 'pending' }),
      q(6, { votes: 50, status: 'answered' }),
      q(8, { votes: 1, asked_at: '2026-12-01T08:00:00Z' }),
      q(7, { votes: 1, asked_at: '2026-12-01T08:00:00Z' }), // a tie on everything but the id
    ],
  }));
  assert.deepEqual(ids(store.queue()), [3, 4, 2, 1, 7, 8]);
  assert.equal(store.answering().id, 4);
  assert.deepEqual(ids(store.byStatus('answered', newestFirst)), [6]);
  assert.equal(store.count('pending'), 1);
});

test('queueOrder is a consistent comparator', () => {
  const a = q(1, { votes: 2 });
  const b = q(2, { votes: 1 });
  assert.ok(queueOrder(a, b) < 0);
  assert.ok(queueOrder(b, a) > 0);
  assert.equal(queueOrder(a, a), 0);
});

test('an optimistic vote moves the count once, and an undo takes it back without going below 0', () => {
  const { store, changes } = storeWith(snapshot({ questions: [q(1, { votes: 0 })] }));
  store.setVoted(1, true);
  store.setVoted(1, true); // the ack confirms: no second +1
  assert.equal(store.questions.get(1).votes, 1);
  assert.ok(store.myVotes.has(1));
  store.setVoted(1, false);
  store.setVoted(1, false);
  assert.equal(store.questions.get(1).votes, 0);
  assert.equal(store.myVotes.has(1), false);
  store.apply({ type: 'votes', seq: 11, votes: [{ id: 1, votes: 0 }] });
  store.myVotes.add(1); // a vote the server knows but the count does not show yet
  store.setVoted(1, false);
  assert.equal(store.questions.get(1).votes, 0);
  assert.equal(changes.filter((c) => c === 'votes').length, 6);
});

test('session, viewers and video events replace their part', () => {
  const { store, changes } = storeWith();
  store.apply({ type: 'session', seq: 11, session: { id: 's', state: 'ended' } });
  store.apply({ type: 'viewers', seq: 11, count: 12 });
  store.apply({ type: 'video', state: 'live' });
  store.apply({ type: 'something_new' });
  assert.equal(store.session.state, 'ended');
  assert.equal(store.viewers, 12);
  assert.equal(store.video, 'live');
  assert.deepEqual(changes, ['snapshot', 'session', 'viewers', 'video']);
});

test('unsubscribing stops the notifications', () => {
  const store = new SessionStore();
  const seen = [];
  const off = store.subscribe((w) => seen.push(w));
  store.apply(snapshot());
  off();
  store.apply({ type: 'viewers', count: 1 });
  assert.deepEqual(seen, ['snapshot']);
});

// ---- consent, mute and the author's private copy (issue 11) ----

test('a patient without consent must consent before the first question; the ack records it', () => {
  const { store, changes } = storeWith(snapshot({ you: { id: ME, role: 'patient', consented_at: null } }));
  assert.equal(store.needsConsent(), true);
  assert.equal(store.consentedAt, null);
  store.setConsent('2026-12-01T10:05:00Z');
  assert.equal(store.needsConsent(), false);
  assert.equal(store.consentedAt, '2026-12-01T10:05:00Z');
  assert.deepEqual(changes, ['snapshot', 'you']);
});

test('consent given earlier comes with the snapshot; staff never consent', () => {
  assert.equal(storeWith(snapshot({ you: { id: ME, role: 'patient', consented_at: '2026-11-30T09:00:00Z' } })).store.needsConsent(), false);
  assert.equal(storeWith(snapshot({ you: { id: 'mod', role: 'moderator' } })).store.needsConsent(), false);
  assert.equal(new SessionStore().needsConsent(), false, 'nothing known yet: nothing to ask');
});

test('a snapshot older than the consent ack does not take the consent back', () => {
  const { store } = storeWith(snapshot({ you: { id: ME, role: 'patient', consented_at: null } }));
  store.setConsent('2026-12-01T10:05:00Z');
  store.apply(snapshot({ seq: 11, you: { id: ME, role: 'patient', consented_at: null } }));
  assert.equal(store.consentedAt, '2026-12-01T10:05:00Z');
  // a new identity (renewed after expiry) starts over
  store.apply(snapshot({ seq: 12, you: { id: 'someone-new', role: 'patient', consented_at: null } }));
  assert.equal(store.needsConsent(), true);
});

test('consent_required after all: the notice comes back', () => {
  const { store } = storeWith(snapshot({ you: { id: ME, role: 'patient', consented_at: '2026-11-30T09:00:00Z' } }));
  store.setConsent(null);
  assert.equal(store.needsConsent(), true);
});

test('muted: from the snapshot, or learnt from an ask refused with `muted`', () => {
  const { store, changes } = storeWith(snapshot({ you: { id: ME, role: 'patient', muted: false } }));
  store.setMuted(true);
  assert.equal(store.you.muted, true);
  store.setMuted(true);
  assert.deepEqual(changes, ['snapshot', 'you'], 'no change, no event');
});

test('the author’s copy is taken as sent: a triage cleared (left out) is gone', () => {
  // The server sends the author their own view of every change (docs/protocol.md), with the
  // private fields left out when empty, so the newest copy is the whole truth.
  const mine = q(4, { author_id: ME, status: 'approved', text: '电话***', original: '电话13812345678', findings: [{ kind: 'phone', start: 2, end: 13 }], triage: 'urgent' });
  const { store } = storeWith(snapshot({ questions: [mine] }));
  assert.equal(store.questions.get(4).triage, 'urgent');
  const { triage, ...cleared } = mine;
  store.apply({ type: 'question', seq: 11, question: cleared });
  assert.equal(store.questions.get(4).triage, undefined);
  assert.equal(store.questions.get(4).original, '电话13812345678');
  assert.deepEqual(store.mine().map((x) => x.id), [4]);
});
