// The server's text limits (`GET /api/limits`, built from the constants the server enforces),
// fetched once per page, so no page carries its own copy of "500 characters".
//
// If they cannot be fetched the pages do not guess: a limit is then `Infinity`, counters show
// the count alone, no `maxlength` is set, and the server's `invalid` reply is what the user
// sees. A later `loadLimits()` tries again.

let loaded = null;   // the limits once fetched
let pending = null;  // the fetch in flight or done; null again after a failure

/**
 * Fetch the limits (at most once while it works). Resolves to the limits or null; never rejects.
 * `fetchImpl` is for tests.
 */
export function loadLimits(fetchImpl = globalThis.fetch) {
  if (!pending) {
    // The default cache mode on purpose: the server lets it be kept for an hour.
    pending = Promise.resolve()
      .then(() => fetchImpl('/api/limits', { headers: { Accept: 'application/json' } }))
      .then((res) => (res.ok ? res.json() : null))
      .catch(() => null)
      .then((data) => {
        if (data && typeof data === 'object') loaded = data;
        else pending = null;
        return loaded;
      });
  }
  return pending;
}

/** The longest accepted text for `name` (`question_chars`, `reason_chars`, …), in characters. */
export function limit(name) {
  const n = loaded && loaded[name];
  return Number.isInteger(n) && n > 0 ? n : Infinity;
}

/** `limit(name)` as a `maxlength` attribute value, or null (no attribute) while unknown. */
export function maxLength(name) {
  const n = limit(name);
  return Number.isFinite(n) ? n : null;
}

/** Set `el.maxLength` from `limit(name)`; leaves it alone while the limit is unknown. */
export function applyMaxLength(el, name) {
  const n = maxLength(name);
  if (el && n !== null) el.maxLength = n;
}

/** Forget what was fetched (tests). */
export function resetLimits() {
  loaded = null;
  pending = null;
}
