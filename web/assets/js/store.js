// The session state as one client sees it, built from the hub's snapshot and events.
// Every page (patient, expert, moderator) keeps one of these.

export const PUBLIC_STATUSES = new Set(['approved', 'answering', 'answered']);

/** Queue order of the protocol: pinned first, then more votes, then older, then lower id. */
export function queueOrder(a, b) {
  if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
  if (a.votes !== b.votes) return b.votes - a.votes;
  const ta = Date.parse(a.asked_at) || 0;
  const tb = Date.parse(b.asked_at) || 0;
  if (ta !== tb) return ta - tb;
  return a.id - b.id;
}

export const oldestFirst = (a, b) => (Date.parse(a.asked_at) || 0) - (Date.parse(b.asked_at) || 0) || a.id - b.id;
export const newestFirst = (a, b) => -oldestFirst(a, b);

export class SessionStore {
  constructor() {
    this.session = null;
    this.you = null;
    this.viewers = 0;
    this.video = null;            // 'live' | 'waiting': is the relay receiving the expert's camera
    this.questions = new Map();   // id → question
    this.questionSeq = new Map(); // id → seq of the copy we hold, so an older ack never overwrites a newer event
    this.myVotes = new Set();
    this.mineIds = new Set();     // ids of this viewer's own questions
    this.loaded = false;
    this.listeners = new Set();
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed(what) {
    for (const fn of this.listeners) fn(what);
  }

  /** Apply one message from the hub. */
  apply(msg) {
    switch (msg.type) {
      case 'snapshot':
        this.session = msg.session;
        this.you = this.keepConsent(msg.you);
        this.viewers = msg.viewers ?? this.viewers;
        this.video = msg.video ?? this.video;
        this.questions = new Map();
        this.questionSeq = new Map();
        for (const q of msg.questions || []) {
          this.questions.set(q.id, q);
          this.questionSeq.set(q.id, msg.seq);
        }
        this.myVotes = new Set(msg.my_votes || []);
        this.mineIds = new Set();
        for (const q of msg.questions || []) if (this.you && q.author_id === this.you.id) this.mineIds.add(q.id);
        this.loaded = true;
        return this.changed('snapshot');
      case 'session':
        this.session = msg.session;
        return this.changed('session');
      case 'question':
      case 'ack':
        if (msg.question) this.putQuestion(msg.question, msg.seq);
        return this.changed('questions');
      case 'question_removed': {
        const q = this.questions.get(msg.id);
        // The author also gets the `rejected` question (with its reason); keep their copy.
        if (q && !this.isMine(q)) this.questions.delete(msg.id);
        else if (q && q.status !== 'rejected') this.questions.set(msg.id, { ...q, status: 'rejected' });
        return this.changed('questions');
      }
      case 'votes':
        for (const { id, votes } of msg.votes || []) {
          const q = this.questions.get(id);
          if (q) this.questions.set(id, { ...q, votes });
        }
        return this.changed('votes');
      case 'viewers':
        this.viewers = msg.count;
        return this.changed('viewers');
      case 'video':
        this.video = msg.state;
        return this.changed('video');
      default:
    }
  }

  /**
   * A snapshot taken before our `consent` was stored may still say "not consented"; the time
   * from the ack wins for the same patient. (If the server really has none, the next `ask`
   * answers `consent_required` and `forgetConsent` asks again.)
   */
  keepConsent(you) {
    const had = this.you && this.you.consented_at;
    if (!you || !had || you.consented_at || you.id !== this.you.id) return you;
    return { ...you, consented_at: had };
  }

  /** When this patient agreed to the privacy notice, or null. */
  get consentedAt() {
    return (this.you && this.you.consented_at) || null;
  }

  /** A patient must agree to the privacy notice before the first question (staff never). */
  needsConsent() {
    return !!this.you && (this.you.role === undefined || this.you.role === 'patient') && !this.consentedAt;
  }

  /** The `consent` ack's time, or null when the server said `consent_required` after all. */
  setConsent(at) {
    if (!this.you) return;
    this.you = { ...this.you, consented_at: at || null };
    this.changed('you');
  }

  /** This patient was muted (an `ask` answered `muted`) or unmuted. */
  setMuted(muted) {
    if (!this.you || !!this.you.muted === muted) return;
    this.you = { ...this.you, muted };
    this.changed('you');
  }

  putQuestion(q, seq) {
    const heldSeq = this.questionSeq.get(q.id);
    if (heldSeq !== undefined && seq !== undefined && seq < heldSeq) return;
    if (this.you && q.author_id === this.you.id) this.mineIds.add(q.id);
    this.questions.set(q.id, q);
    if (seq !== undefined) this.questionSeq.set(q.id, seq);
  }

  /**
   * The author's own question once public reaches them as the public copy (no `author_id`),
   * so "mine" is remembered by id from the snapshot, the ask's ack and author-addressed events.
   */
  isMine(q) {
    return this.mineIds.has(q.id);
  }

  list(filter, order = queueOrder) {
    const out = [];
    for (const q of this.questions.values()) if (filter(q)) out.push(q);
    return out.sort(order);
  }

  /** Approved and answering questions, in queue order. */
  queue() {
    return this.list((q) => q.status === 'approved' || q.status === 'answering');
  }

  answering() {
    for (const q of this.questions.values()) if (q.status === 'answering') return q;
    return null;
  }

  byStatus(status, order) {
    return this.list((q) => q.status === status, order);
  }

  mine() {
    return this.list((q) => this.isMine(q), newestFirst);
  }

  count(status) {
    let n = 0;
    for (const q of this.questions.values()) if (q.status === status) n += 1;
    return n;
  }

  /** Optimistic vote change, corrected by the ack and the next `votes` event. */
  setVoted(id, voted) {
    const q = this.questions.get(id);
    const had = this.myVotes.has(id);
    if (voted) this.myVotes.add(id); else this.myVotes.delete(id);
    if (q && had !== voted) this.questions.set(id, { ...q, votes: Math.max(0, q.votes + (voted ? 1 : -1)) });
    this.changed('votes');
  }
}
