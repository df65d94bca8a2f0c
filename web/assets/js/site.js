// The operator's settings (`GET /api/site`): the disclaimer, the triage replies, how long
// questions are kept, who runs the service. Fetched once per page. When the request fails the
// pages still show the safety frame, from the built-in texts of the catalogues (`site.*`).
import { h } from './dom.js';
import { t, tIn, currentLang } from './i18n.js';

let loaded = null;
let pending = null;

/** Fetch the settings (at most once while it works). Resolves to them or null; never rejects. */
export function loadSite(fetchImpl = globalThis.fetch) {
  if (!pending) {
    // Default cache mode on purpose: the server marks the reply cacheable.
    pending = Promise.resolve()
      .then(() => fetchImpl('/api/site', { headers: { Accept: 'application/json' } }))
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

/** Whether the operator's texts are in (cards built before show the built-in ones). */
export const siteLoaded = () => loaded !== null;

/** Forget what was fetched (tests). */
export function resetSite() {
  loaded = null;
  pending = null;
}

/** A `{zh, en}` text from the settings in the reader's language, else the catalogue's `fallbackKey`. */
export function localized(texts, fallbackKey) {
  const own = texts && typeof texts === 'object' ? texts[currentLang()] : null;
  return typeof own === 'string' && own.trim() ? own : t(fallbackKey);
}

export const disclaimer = () => localized(loaded && loaded.disclaimer, 'site.disclaimer');

/** The disclaimer in a given language (the poster prints both). */
export function disclaimerIn(language) {
  const own = loaded && loaded.disclaimer && loaded.disclaimer[language];
  return typeof own === 'string' && own.trim() ? own : tIn(language, 'site.disclaimer');
}
export const retentionDays = () => (loaded && Number.isInteger(loaded.retention_days) ? loaded.retention_days : 30);
/** How to reach the operator, if the settings say (a phone number, an address, a URL). */
export const operatorContact = () => (loaded && typeof loaded.contact === 'string' && loaded.contact.trim()) || null;
export const operatorName = () => (loaded && typeof loaded.operator === 'string' && loaded.operator) || 'OncoLive';

/**
 * What the author of a triaged question reads: the canned reply for `tag` (`clinic`, `urgent`)
 * and, when the operator set them, where to book (clinic only) and whom to call (both).
 */
export function triageReply(tag) {
  const triage = (loaded && loaded.triage) || {};
  const text = localized(triage[tag], `site.triage.${tag}`);
  // Booking is for a clinic visit; an urgent case is told to call, not to book.
  const bookingUrl = tag === 'clinic' && typeof triage.booking_url === 'string' && /^https?:\/\//i.test(triage.booking_url) ? triage.booking_url : null;
  const hotline = typeof triage.hotline === 'string' && triage.hotline.trim() ? triage.hotline.trim() : null;
  return { text, bookingUrl, hotline };
}

/** The triage reply as a card (in the author's question). */
export function triageNode(tag) {
  const { text, bookingUrl, hotline } = triageReply(tag);
  return h('div', { class: `triage ${tag}`, role: tag === 'urgent' ? 'alert' : null },
    h('strong', { text: t(`triage.${tag}`) }), h('div', { text }),
    bookingUrl ? h('a', { class: 'btn small', href: bookingUrl, target: '_blank', rel: 'noopener', text: t('triage.book') }) : null,
    hotline ? h('a', { class: 'btn small', href: `tel:${hotline.replace(/[^\d+]/g, '')}`, text: t('triage.call', { phone: hotline }) }) : null);
}

/**
 * All but the last 4 characters as `*` (4 or fewer: all). The server already sends it so; masking again costs
 * nothing and keeps a full number off a patient's screen should a reply ever carry one.
 */
export function maskLicence(licence) {
  const chars = Array.from(String(licence || ''));
  if (chars.length <= 4) return '*'.repeat(chars.length); // as the server does: too short to show a part
  return '*'.repeat(chars.length - 4) + chars.slice(-4).join('');
}

/**
 * The expert's badge: name, title, hospital and department, "Verified", the licence as the
 * server masked it (`licence: false` leaves it out, for the poster). Null unless the host
 * marked the profile verified: an unchecked title is
 * not shown as if it were.
 */
export function expertBadge(profile, tr = t, { licence = true } = {}) {
  if (!profile || profile.verified !== true) return null;
  const where = [profile.hospital, profile.department].filter(Boolean).join(' ');
  return h('div', { class: 'badge-expert' },
    h('div', { class: 'who' }, h('span', { class: 'name', text: profile.name || '' }),
      profile.title ? h('span', { class: 'title', text: profile.title }) : null,
      h('span', { class: 'verified', text: `✓ ${tr('badge.verified')}` })),
    where ? h('div', { class: 'where', text: where }) : null,
    licence && profile.licence ? h('div', { class: 'licence', text: tr('badge.licence', { licence: maskLicence(profile.licence) }) }) : null);
}
