// What the expert and moderator consoles share: the token from the link, the hub, the store,
// the fatal-error screen, and sending a request with a readable error toast.
import { $, h, show, setChildren, toast, stateBlock } from './dom.js';
import { t } from './i18n.js';
import { api, sessionIdFromPath, takeFragmentToken } from './api.js';
import { Hub } from './hub.js';
import { SessionStore } from './store.js';
import { initChrome } from './ui.js';

/**
 * Start a staff console. `role` is `expert` or `moderator`; `render` runs (once a frame at most)
 * after every change; `onLang` after a language switch.
 */
export function startStaff({ role, render, onLang }) {
  const sid = sessionIdFromPath();
  const token = sid ? takeFragmentToken(`oncolive.${role}.${sid}`) : null;
  const store = new SessionStore();
  let fatal = null;

  const conn = initChrome({ onLang: () => { paintFatal(); if (onLang) onLang(); render(); } });

  function paintFatal() {
    if (!fatal) return;
    setChildren($('#fatal'), h('div', { class: 'card' }, stateBlock(fatal.kind, t(fatal.title), fatal.detail ? t(fatal.detail) : '')));
  }

  function fail(kind, title, detail) {
    fatal = { kind, title, detail };
    paintFatal();
    show($('#loading'), false);
    show($('#console'), false);
    show($('#fatal'), true);
  }

  if (!sid || !token) {
    fail('error', 'staff.noToken', 'staff.noTokenDetail');
    return null;
  }

  const hub = new Hub({
    sessionId: sid,
    token,
    onMessage: (msg) => store.apply(msg),
    onStatus: (s) => {
      conn.set(s);
      if (s === 'gone') fail('empty', 'error.notFound', 'error.notFoundDetail');
      if (s === 'expired') fail('error', 'staff.expired', 'staff.noTokenDetail');
      render();
    },
    probe: async () => {
      try {
        await api(`/api/sessions/${encodeURIComponent(sid)}`);
        return 'ok';
      } catch (err) { return err.status === 404 ? 'gone' : 'ok'; }
    },
  });
  conn.onRetry(() => hub.reconnectNow());
  store.subscribe((what) => {
    if (what === 'snapshot') {
      show($('#loading'), false);
      show($('#fatal'), false);
      show($('#console'), true);
      fatal = null;
    }
    render();
  });
  hub.start();

  /** Send a request; on failure show why and resolve to null. */
  async function send(body) {
    try {
      return await hub.request(body);
    } catch (err) {
      toast(describeError(err), { bad: true, ms: 5000 });
      return null;
    }
  }

  return { sid, token, store, hub, send, fail };
}

export function describeError(err) {
  const known = ['offline', 'not_connected', 'invalid', 'session_ended', 'rate_limited', 'conflict',
    'forbidden', 'unavailable', 'not_found', 'timeout', 'disconnected'];
  const base = known.includes(err.code) ? t(`err.${err.code}`) : t('error.generic');
  return err.code === 'invalid' || err.code === 'conflict' ? `${base} (${err.message})` : base;
}
