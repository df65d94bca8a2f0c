// Questions the patient sent that the server has not acknowledged yet: typed while the socket was
// down, or sent just before it dropped. Kept in localStorage, so a reload keeps them, and sent
// exactly once when the socket is back.
//
// The protocol's `ask` has no client id (an unknown field is refused), so an entry is its own
// local id, its text and, once it has been put on a socket, the ids of "my questions" the page
// knew at that moment. After reconnecting, a question of mine that is not among those ids and has
// the same text is this entry arriving: it is not sent again (rule 4 of the reconnect rules in
// docs/protocol.md). An entry never put on a socket (`queued`) cannot be on the server.
//
// Entries that can never be sent (the session ended, or no longer exists, or the host replaced
// this link) are given up: dropped from storage, and shown for the rest of the visit as not
// sent, with the reason.

/** The text as the server stores it (trimmed, tabs as spaces, one kind of line break). */
export function normalText(text) {
  return String(text ?? '').replace(/\r\n?|\u2028|\u2029/g, '\n').replace(/\t/g, ' ').trim();
}

export class Outbox {
  /**
   * @param {object} o
   * @param {string} o.key the localStorage key (one per session)
   * @param {Storage} [o.storage] localStorage, or a stand-in in tests
   * @param {() => number} [o.now]
   */
  constructor({ key, storage, now = () => Date.now() }) {
    this.key = key;
    if (storage === undefined) {
      try { storage = globalThis.localStorage; } catch { storage = null; } // blocked storage throws
    }
    this.storage = storage;
    this.now = now;
    this.items = this.read();
    this.unsent = []; // given up: in memory only, to say so
  }

  read() {
    if (!this.storage) return [];
    try {
      const list = JSON.parse(this.storage.getItem(this.key) || '[]');
      return Array.isArray(list) ? list.filter((e) => e && typeof e.id === 'string' && typeof e.text === 'string') : [];
    } catch {
      return [];
    }
  }

  save() {
    if (!this.storage) return;
    try {
      if (this.items.length) this.storage.setItem(this.key, JSON.stringify(this.items));
      else this.storage.removeItem(this.key);
    } catch { /* storage full or blocked: the page still holds them */ }
  }

  get size() {
    return this.items.length;
  }

  /**
   * A new question to send; `queued` until it is put on a socket. `consented`: the patient
   * ticked the privacy notice when asking (the consent itself is sent with the question).
   */
  add(text, { consented = false } = {}) {
    const entry = {
      id: `local-${this.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
      text: normalText(text),
      created_at: new Date(this.now()).toISOString(),
      state: 'queued',
      known: null,
      consented: !!consented,
    };
    this.items.push(entry);
    this.save();
    return entry;
  }

  get(id) {
    return this.items.find((e) => e.id === id) || null;
  }

  /**
   * About to be put on a socket: from now on the server may have it. `mineIds` are the ids of
   * this patient's questions the page holds now (stored before the request leaves).
   */
  markSending(id, mineIds) {
    const entry = this.get(id);
    if (!entry) return null;
    entry.state = 'sending';
    entry.known = [...mineIds].map(Number);
    this.save();
    return entry;
  }

  /** Refused for good, or acknowledged: forget it. */
  remove(id) {
    const before = this.items.length;
    this.items = this.items.filter((e) => e.id !== id);
    if (this.items.length !== before) this.save();
  }

  /** Back to `queued` (a request refused before anything was stored, e.g. rate limited). */
  requeue(id) {
    const entry = this.get(id);
    if (!entry) return;
    entry.state = 'queued';
    entry.known = null;
    this.save();
  }

  /**
   * Compare the entries that may have reached the server with the state after reconnecting:
   * `mine` are this patient's questions as the store holds them. Returns the entries found
   * there (and forgets them, each matched to a different question); the rest stay. A question
   * can only match an entry that was put on a socket before it appeared, so this may run at any
   * time, with the request still waiting for its reply too.
   */
  reconcile(mine) {
    const taken = new Set();
    const arrived = [];
    for (const entry of this.items) {
      if (entry.state !== 'sending') continue;
      const known = new Set(entry.known || []);
      const q = mine.find((x) => !known.has(Number(x.id)) && !taken.has(x.id)
        && normalText(typeof x.original === 'string' ? x.original : x.text) === entry.text);
      if (q) {
        taken.add(q.id);
        arrived.push({ entry, question: q });
      }
    }
    if (arrived.length) {
      const gone = new Set(arrived.map((a) => a.entry.id));
      this.items = this.items.filter((e) => !gone.has(e.id));
      this.save();
    }
    return arrived;
  }

  /**
   * Every entry left can never be sent (`reason`: `ended`, `gone` or `revoked`): forget them
   * (storage too) and keep them only to show as not sent. Run `reconcile` first: an entry
   * found on the server arrived. Returns the entries given up.
   */
  abandon(reason) {
    const given = this.items.map((e) => ({ ...e, state: 'unsent', reason }));
    if (!given.length) return [];
    this.unsent.push(...given);
    this.items = [];
    this.save();
    return given;
  }

  /** The entries as cards for "my questions", oldest first (a status of their own). */
  asQuestions(author = null) {
    const status = (e) => (e.state === 'unsent' || e.state === 'queued' ? e.state : 'sending');
    return [...this.unsent, ...this.items].map((e) => ({
      id: e.id, text: e.text, status: status(e), votes: 0, pinned: false,
      author, asked_at: e.created_at, local: true, ...(e.reason ? { reason: e.reason } : {}),
    }));
  }
}
