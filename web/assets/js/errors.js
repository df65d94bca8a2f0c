// One wording for every failed request, whichever page sent it.
import { t } from './i18n.js';

/** The error codes with their own message (`err.<code>`): the server's and the hub's own. */
const KNOWN = new Set(['offline', 'not_connected', 'invalid', 'session_ended', 'rate_limited', 'conflict',
  'forbidden', 'unavailable', 'not_found', 'timeout', 'disconnected', 'muted', 'consent_required']);

/**
 * A readable message for a HubError. With `detail` (staff consoles), `invalid` and `conflict`
 * add the server's own explanation; patients get the plain sentence only.
 */
export function errorText(err, { detail = false } = {}) {
  const code = err && err.code;
  const base = KNOWN.has(code) ? t(`err.${code}`) : t('error.generic');
  return detail && (code === 'invalid' || code === 'conflict') ? `${base} (${err.message})` : base;
}
