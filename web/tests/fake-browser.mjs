// The few browser globals hub.js touches, and a WebSocket whose server side a test plays.
// Import this before hub.js.

/** Define (or replace) a global the way a browser would have it. */
function defineGlobal(name, value) {
  Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
}

defineGlobal('window', new EventTarget());
defineGlobal('document', Object.assign(new EventTarget(), { visibilityState: 'visible' }));
defineGlobal('location', { protocol: 'http:', host: 'oncolive.test' });
defineGlobal('navigator', { onLine: true });

/** Put the page back online and visible (tests change these). */
export function resetBrowser() {
  navigator.onLine = true;
  document.visibilityState = 'visible';
}

/**
 * A WebSocket for the hub to open. Every instance is kept in `FakeSocket.opened`; the test
 * plays the server with `accept()`, `receive(msg)` and `drop(code)`.
 */
export class FakeSocket {
  static opened = [];

  constructor(url, protocols = []) {
    this.url = new URL(url);
    this.protocols = protocols;
    this.readyState = 0; // CONNECTING
    this.sent = [];
    this.closedByClient = null;
    FakeSocket.opened.push(this);
  }

  // ---- what the hub calls ----

  send(data) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(JSON.parse(data));
  }

  close(code = 1005) {
    this.closedByClient = code;
    this.readyState = 3;
  }

  // ---- what the test (the server, the network) does ----

  accept() {
    this.readyState = 1;
    this.onopen({});
  }

  receive(msg) {
    this.onmessage({ data: JSON.stringify(msg) });
  }

  drop(code = 1006) {
    this.readyState = 3;
    this.onclose({ code });
  }

  /** The last request the hub sent of `type`. */
  last(type) {
    return this.sent.filter((m) => m.type === type).at(-1);
  }
}

/** Let pending promise callbacks run (setImmediate is not among the mocked timers). */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Watch a promise without awaiting it: `state()` is pending, resolved or rejected. */
export function watch(promise) {
  const seen = { status: 'pending', value: undefined };
  promise.then(
    (value) => Object.assign(seen, { status: 'resolved', value }),
    (value) => Object.assign(seen, { status: 'rejected', value }),
  );
  return seen;
}
