// A page's live link to its session: the hub feeding a store, the header's connection
// indicator, its retry button, and the probe that tells a vanished session from a bad network.
import { api } from './api.js';
import { Hub } from './hub.js';

/**
 * Asked by the hub when opening keeps failing: `gone` if the session no longer exists,
 * `unauthorized` if the token is refused (expired, or a staff link the host replaced).
 */
export async function probeSession(sid, token) {
  try {
    await api(`/api/sessions/${encodeURIComponent(sid)}`);
  } catch (err) {
    return err.status === 404 ? 'gone' : 'ok';
  }
  try {
    await api('/api/me', { token });
    return 'ok';
  } catch (err) {
    return err.status === 401 ? 'unauthorized' : 'ok';
  }
}

/**
 * Connect to session `sid` with `token` and return the started hub. Messages go to `store`;
 * every status goes to `conn` (from `initChrome`) and then to `onStatus`; `onChange` subscribes
 * to the store before the first message; `onExpired` is the hub's (a new token, or null).
 */
export function connectSession({ sid, token, store, conn, onStatus, onChange, onExpired }) {
  const hub = new Hub({
    sessionId: sid,
    token,
    onMessage: (msg) => store.apply(msg),
    onStatus: (s) => {
      conn.set(s);
      if (onStatus) onStatus(s);
    },
    onExpired,
    probe: () => probeSession(sid, hub.token),
  });
  conn.onRetry(() => hub.reconnectNow());
  if (onChange) store.subscribe(onChange);
  return hub.start();
}
