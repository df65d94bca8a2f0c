// What the expert and moderator consoles share: the token from the link, the live connection,
// the fatal-error screen, the header line, and sending a request with a readable error toast.
import { $, show, toast } from './dom.js';
import { t } from './i18n.js';
import { sessionIdFromPath, takeFragmentToken } from './api.js';
import { SessionStore } from './store.js';
import { initChrome, fatalScreen } from './ui.js';
import { connectSession } from './connection.js';
import { errorText } from './errors.js';
import { loadLimits } from './limits.js';

/**
 * Start a staff console. `role` is `expert` or `moderator`; `render` runs (once a frame at most)
 * after every change; `onLang` after a language switch.
 */
export function startStaff({ role, render, onLang }) {
  const sid = sessionIdFromPath();
  const token = sid ? takeFragmentToken(`oncolive.${role}.${sid}`) : null;
  const store = new SessionStore();
  const fatal = fatalScreen();

  const conn = initChrome({ onLang: () => { fatal.paint(); if (onLang) onLang(); render(); } });

  function fail(kind, title, detail) {
    fatal.set(kind, title, detail);
    show($('#loading'), false);
    show($('#console'), false);
    show($('#fatal'), true);
  }

  if (!sid || !token) {
    fail('error', 'staff.noToken', 'staff.noTokenDetail');
    return null;
  }

  loadLimits().then(render);
  const hub = connectSession({
    sid,
    token,
    store,
    conn,
    onStatus: (s) => {
      if (s === 'gone') fail('empty', 'error.notFound', 'error.notFoundDetail');
      if (s === 'expired') fail('error', 'staff.expired', 'staff.noTokenDetail');
      if (s === 'revoked') fail('error', 'staff.revoked', 'staff.revokedDetail');
      render();
    },
    onChange: (what) => {
      if (what === 'snapshot') {
        show($('#loading'), false);
        show($('#fatal'), false);
        show($('#console'), true);
        fatal.clear();
      }
      render();
    },
  });

  /** Send a request; on failure show why and resolve to null. */
  async function send(body) {
    try {
      return await hub.request(body);
    } catch (err) {
      toast(errorText(err, { detail: true }), { bad: true, ms: 5000 });
      return null;
    }
  }

  return { sid, token, store, hub, send, fail };
}

/** The line under a console's title: the expert and the kind of moderation. */
export function staffSubline(s) {
  return `${t('session.expert', { name: s.expert_name })} · ${t(s.moderation === 'post' ? 'mod.post' : 'mod.pre')}`;
}
