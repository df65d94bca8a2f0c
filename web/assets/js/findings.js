// What the server's detector found in a text (docs/protocol.md, "Finding"), and how the pages
// show it: the patient's warning before sending, the moderator's highlights, the reasons of a
// rejection. Offsets are code points of the text they index, so everything here works on
// `Array.from(text)`, never on UTF-16 `slice` (an emoji before a phone number would shift it).
import { h } from './dom.js';
import { t, currentLang } from './i18n.js';

/** Every kind the server reports; all but `blocked_word` are personal details, masked as `***`. */
export const KINDS = ['phone', 'landline', 'id_number', 'email', 'bank_card', 'contact', 'record_number', 'blocked_word'];
export const isPersonal = (kind) => kind !== 'blocked_word' && KINDS.includes(kind);

/** The rejection codes a moderator picks from; `muted` is the server's own (set by a mute). */
export const REASON_CODES = ['personal_details', 'off_topic', 'duplicate', 'abuse', 'advertising', 'medical_advice', 'other'];

/**
 * Cut `text` into runs: `{ text, kind }` where a finding covers it, `{ text, kind: null }`
 * between. Findings out of range, empty or overlapping an earlier one (by start) are clipped, so
 * a bad offset from a newer or older server never hides or repeats a character.
 */
export function segments(text, findings) {
  const chars = Array.from(text || '');
  const spans = (Array.isArray(findings) ? findings : [])
    .filter((f) => f && Number.isInteger(f.start) && Number.isInteger(f.end))
    .map((f) => ({ kind: f.kind, start: Math.max(0, f.start), end: Math.min(chars.length, f.end) }))
    .filter((f) => f.end > f.start)
    .sort((a, b) => a.start - b.start || b.end - a.end);
  const out = [];
  let at = 0;
  for (const f of spans) {
    const start = Math.max(f.start, at);
    if (f.end <= start) continue;
    if (start > at) out.push({ text: chars.slice(at, start).join(''), kind: null });
    out.push({ text: chars.slice(start, f.end).join(''), kind: f.kind });
    at = f.end;
  }
  if (at < chars.length || !out.length) out.push({ text: chars.slice(at).join(''), kind: null });
  return out;
}

/** The distinct kinds found, in the order of `KINDS` (a warning names each once). */
export function kindsFound(findings) {
  const seen = new Set((findings || []).map((f) => f && f.kind));
  return KINDS.filter((k) => seen.has(k));
}

/** "a phone number and an ID number" / "手机号、身份证号" */
export function kindList(kinds) {
  const names = kinds.map((k) => t(`find.${k}`));
  try {
    return new Intl.ListFormat(currentLang() === 'zh' ? 'zh-CN' : 'en', { type: 'conjunction' }).format(names);
  } catch {
    return names.join(currentLang() === 'zh' ? '、' : ', ');
  }
}

/**
 * The patient's warning under the ask box, or '' when nothing was found: which personal details
 * will be hidden, and whether a moderator will look first (a blocked word holds the question).
 */
export function warningText(findings) {
  const kinds = kindsFound(findings);
  const personal = kinds.filter(isPersonal);
  const parts = [];
  if (personal.length) parts.push(t('warn.personal', { kinds: kindList(personal), n: personal.length }));
  if (kinds.includes('blocked_word')) parts.push(t('warn.blocked'));
  return parts.join(' ');
}

/** The text with a `<mark>` per finding, each naming its kind (for the moderator). */
export function highlighted(text, findings) {
  return segments(text, findings).map((s) => (s.kind
    // The kind's name comes from CSS (`attr(data-label)`), so copying the text copies the text only.
    ? h('mark', { class: s.kind === 'blocked_word' ? 'find blocked' : 'find', dataset: { kind: s.kind, label: t(`kind.${s.kind}`) } }, s.text)
    : s.text));
}

/**
 * Why a question was rejected, in the reader's language: the preset reason by its code, then
 * the moderator's own words as written. '' when neither is set.
 */
export function reasonText(q) {
  const parts = [];
  if (q && q.reason_code) parts.push(t(`reason.${q.reason_code}`) === `reason.${q.reason_code}` ? t('reason.other') : t(`reason.${q.reason_code}`));
  if (q && q.reason) parts.push(q.reason);
  return parts.join(currentLang() === 'zh' ? '：' : ': ');
}

/** The moderator's blocked words: one word or phrase a line (commas too); blanks and repeats dropped. */
export function parseWordList(text) {
  const seen = new Set();
  const out = [];
  for (const raw of String(text || '').split(/[\n,，、]/)) {
    const w = raw.trim();
    if (w && !seen.has(w)) {
      seen.add(w);
      out.push(w);
    }
  }
  return out;
}
