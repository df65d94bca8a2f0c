// The one WebSocket client: connect, resume with `since`, reconnect by the close-code rules of
// docs/protocol.md, match replies to requests, and notice dead connections on weak networks.

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 15000;
const FLOOD_WAIT_MS = 10000;      // close code 4008: at least ten seconds
const HEARTBEAT_MS = 20000;       // our own ping, so a silently dead network is noticed
const SILENCE_LIMIT_MS = 45000;   // nothing received for this long: the socket is dead
const QUICK_CHECK_MS = 5000;      // after a network change, a ping must be answered this fast
const REQUEST_TIMEOUT_MS = 15000;
const STABLE_MS = 5000;           // a connection that lived this long resets the backoff
const PROBE_AFTER_FAILURES = 3;   // failed opens in a row before asking `probe()` why
const SUBPROTOCOL = 'oncolive.v1';
const OPEN = 1;                   // WebSocket.OPEN (a socket given in tests has no statics)

/** Errors from `request()`: the server's `error` reply, or a local reason (`offline`, `disconnected`, `timeout`). */
export class HubError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.code = code;
    Object.assign(this, extra);
  }
  /**
   * The request may or may not have been stored: the connection dropped before its reply, or
   * storage went away in the middle of the write (`unavailable`).
   */
  get uncertain() {
    return this.code === 'disconnected' || this.code === 'timeout' || this.code === 'unavailable';
  }
}

const SEQ_EVENTS = new Set(['session', 'question', 'question_removed', 'votes']);

/**
 * Status values given to `onStatus`:
 * connecting, online, reconnecting, offline (the device has no network), closed (1000),
 * expired (4001 and no new token), gone (the session does not exist), revoked (4003: the host
 * replaced this staff link), unauthorized.
 */
export class Hub {
  /**
   * @param {object} o
   * @param {string} o.sessionId
   * @param {string} o.token
   * @param {(msg: object) => void} o.onMessage snapshot, resumed, events, viewers, acks
   * @param {(status: string) => void} [o.onStatus]
   * @param {() => Promise<string|null>} [o.onExpired] returns a new token, or null
   * @param {() => Promise<'ok'|'gone'|'unauthorized'>} [o.probe] asked why opening keeps failing
   * @param {typeof WebSocket} [o.WebSocket] the socket class (the browser's; tests give a fake)
   */
  constructor({ sessionId, token, onMessage, onStatus, onExpired, probe, WebSocket: Socket = globalThis.WebSocket }) {
    this.sessionId = sessionId;
    this.token = token;
    this.onMessage = onMessage;
    this.onStatus = onStatus || (() => {});
    this.onExpired = onExpired;
    this.probe = probe;
    this.Socket = Socket;
    this.seq = null;          // highest event seq applied; sent back as `since`
    this.ws = null;
    this.status = 'idle';
    this.attempt = 0;
    this.failures = 0;        // opens in a row that never reached `open`
    this.timer = null;
    this.heartbeat = null;
    this.lastRx = 0;
    this.reqCounter = 0;
    this.pending = new Map();
    this.stopped = false;
    this.everSynced = false;
    this.partial = null;      // a snapshot whose `snapshot_part`s are still coming
    // A network change often leaves a socket that looks open but is dead (the phone moved
    // from Wi-Fi to mobile data): check it at once instead of waiting for the silence limit.
    this.onOnline = () => {
      if (!this.ws) this.reconnectNow();
      else this.quickCheck();
    };
    this.onOffline = () => {
      if (!this.ws) this.setStatus('offline');
      else this.quickCheck();
    };
    this.onVisible = () => {
      if (document.visibilityState === 'visible') {
        if (!this.ws) this.reconnectNow();
        else this.quickCheck();
      }
    };
  }

  start() {
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.open();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopHeartbeat();
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    document.removeEventListener('visibilitychange', this.onVisible);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
    this.failPending('disconnected');
  }

  get online() {
    return this.status === 'online';
  }

  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.onStatus(status);
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = this.seq !== null ? `?since=${this.seq}` : '';
    return `${scheme}://${location.host}/api/sessions/${encodeURIComponent(this.sessionId)}/ws${q}`;
  }

  /**
   * The token travels as a subprotocol, never in the URL (which proxies write to their access
   * logs); the server answers with `oncolive.v1`.
   */
  protocols() {
    return [SUBPROTOCOL, `bearer.${this.token}`];
  }

  open() {
    clearTimeout(this.timer);
    if (this.stopped || this.ws) return;
    // navigator.onLine is only a hint (it says "offline" on some networks that work, e.g. a
    // loopback-only or captive LAN), so we always try; it only changes what the user is told.
    this.setStatus(this.everSynced ? 'reconnecting' : 'connecting');
    this.partial = null; // a snapshot cut off with its socket is sent again whole
    let ws;
    try {
      ws = new this.Socket(this.url(), this.protocols());
    } catch {
      this.schedule(this.backoff());
      return;
    }
    this.ws = ws;
    let openedAt = 0;
    ws.onopen = () => {
      openedAt = Date.now();
      this.failures = 0;
      this.lastRx = openedAt;
      this.startHeartbeat();
    };
    ws.onmessage = (e) => {
      if (this.ws !== ws) return;
      this.lastRx = Date.now();
      this.handle(e.data);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return; // we already gave up on this socket
      this.ws = null;
      this.stopHeartbeat();
      this.failPending('disconnected');
      if (openedAt && Date.now() - openedAt > STABLE_MS) this.attempt = 0;
      this.closed(e.code, openedAt !== 0);
    };
  }

  /** Decide what to do after a close, following the close-code table. */
  async closed(code, opened) {
    if (this.stopped) return;
    if (!opened) {
      this.failures += 1;
      if (this.probe && this.failures >= PROBE_AFTER_FAILURES && this.failures % PROBE_AFTER_FAILURES === 0) {
        let verdict = 'ok';
        try { verdict = await this.probe(); } catch { verdict = 'ok'; }
        if (this.stopped) return;
        if (verdict === 'gone') return this.setStatus('gone');
        if (verdict === 'unauthorized') return this.expired();
      }
    }
    switch (code) {
      case 1000:
        return this.setStatus('closed');
      case 4001:
        return this.expired();
      case 4003: // the host replaced this link: a new token can only come from the host
        return this.setStatus('revoked');
      case 4000: // too slow: at once, the server gives us what we missed
        return this.schedule(this.attempt++ === 0 ? 0 : this.backoff());
      case 4008:
        return this.schedule(Math.max(FLOOD_WAIT_MS, this.backoff()) + Math.random() * 2000);
      case 1001: // node shutting down: spread the reconnects of all viewers over a moment
        this.attempt += 1;
        return this.schedule(Math.random() * 1500);
      default: // 1006 (network), 1009, 1011, 4009 …
        return this.schedule(this.backoff());
    }
  }

  async expired() {
    this.setStatus('expired');
    const next = this.onExpired ? await this.onExpired().catch(() => null) : null;
    if (next && !this.stopped) {
      this.token = next;
      this.seq = null; // a new identity: start from a snapshot
      this.attempt = 0;
      this.failures = 0;
      this.open();
    }
  }

  backoff() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** this.attempt);
    this.attempt += 1;
    return base / 2 + Math.random() * (base / 2);
  }

  schedule(ms) {
    clearTimeout(this.timer);
    if (navigator.onLine === false) this.setStatus('offline');
    else this.setStatus(this.everSynced ? 'reconnecting' : 'connecting');
    this.timer = setTimeout(() => this.open(), ms);
  }

  /** Reconnect without waiting (network came back, tab became visible, user asked). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    if (this.status === 'gone') return;
    this.attempt = 0;
    this.open();
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.heartbeat = setInterval(() => this.checkAlive(), HEARTBEAT_MS);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** Ping, and drop the socket if the server has been silent too long (a half-dead mobile link). */
  checkAlive() {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return;
    if (Date.now() - this.lastRx > SILENCE_LIMIT_MS) {
      this.dropDead(ws);
      return;
    }
    this.request({ type: 'ping' }).catch(() => {});
  }

  /** Ping now; no answer within QUICK_CHECK_MS means the socket is dead. */
  quickCheck() {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return;
    const sentAt = Date.now();
    this.request({ type: 'ping' }).catch(() => {});
    setTimeout(() => {
      if (this.ws === ws && this.lastRx < sentAt) this.dropDead(ws);
    }, QUICK_CHECK_MS);
  }

  /** Give up on a socket that no longer carries anything and reconnect with `since`. */
  dropDead(ws) {
    this.ws = null;
    this.stopHeartbeat();
    try { ws.close(); } catch { /* ignore */ }
    this.failPending('disconnected');
    this.schedule(0);
  }

  handle(data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (!msg || typeof msg.type !== 'string') return;
    this.dispatch(msg);
  }

  dispatch(msg) {
    switch (msg.type) {
      case 'snapshot':
        // A large session comes in parts; nothing else arrives between them (docs/protocol.md).
        if (msg.more) {
          this.partial = { ...msg, questions: [...(msg.questions || [])], my_votes: [...(msg.my_votes || [])] };
          return;
        }
        this.partial = null;
        this.seq = msg.seq;
        // falls through: after its seq is taken, a snapshot syncs like a resume
      case 'resumed':
        this.everSynced = true;
        this.onMessage(msg);
        this.setStatus('online');
        return;
      case 'snapshot_part': {
        const whole = this.partial;
        if (!whole || msg.seq !== whole.seq) return; // not the snapshot being received
        // One at a time: spreading thousands of questions into push() can overflow the stack.
        for (const q of msg.questions || []) whole.questions.push(q);
        for (const id of msg.my_votes || []) whole.my_votes.push(id);
        if (msg.more) return;
        whole.more = false;
        return this.dispatch(whole);
      }
      case 'ack':
      case 'pong':
      case 'screened': // the answer to `screen`: a reply like the others, never an event
      case 'error': {
        if (msg.type === 'ack' && msg.question) this.onMessage(msg);
        const p = msg.req !== undefined ? this.pending.get(msg.req) : undefined;
        if (!p) return;
        this.pending.delete(msg.req);
        clearTimeout(p.timer);
        if (msg.type === 'error') p.reject(new HubError(msg.code, msg.message, { retryAfterMs: msg.retry_after_ms }));
        else p.resolve(msg);
        return;
      }
      default:
        if (SEQ_EVENTS.has(msg.type)) {
          // Events at or below what we applied are old news (a robustness rule of the protocol).
          if (this.seq !== null && msg.seq <= this.seq) return;
          this.seq = msg.seq;
        }
        // `viewers` carries the head seq but is not an event: we do not move `since` with it,
        // so an event still on its way can never be skipped.
        this.onMessage(msg);
    }
  }

  /** Send a request; resolves with the `ack`/`pong`/`screened`, rejects with a HubError. */
  request(body) {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || this.status !== 'online') {
      return Promise.reject(new HubError(this.status === 'offline' ? 'offline' : 'not_connected'));
    }
    const req = `r${++this.reqCounter}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req);
        reject(new HubError('timeout'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(req, { resolve, reject, timer });
      try {
        ws.send(JSON.stringify({ ...body, req }));
      } catch {
        clearTimeout(timer);
        this.pending.delete(req);
        reject(new HubError('not_connected'));
      }
    });
  }

  failPending(code) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new HubError(code));
    }
    this.pending.clear();
  }
}
