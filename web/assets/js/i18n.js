// Two languages, one catalogue each. Both are small, so both load with the page: switching is
// instant and no extra round trip is spent on a slow network.
import en from '../i18n/en.js';
import zh from '../i18n/zh.js';

const CATALOGUES = { en, zh };
const STORE_KEY = 'oncolive.lang';
const LOCALE = { en: 'en', zh: 'zh-CN' };

let lang = detect();

function detect() {
  try {
    const saved = localStorage.getItem(STORE_KEY);
    if (saved && CATALOGUES[saved]) return saved;
  } catch { /* storage may be blocked */ }
  const wanted = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en']);
  for (const l of wanted) {
    const code = String(l).toLowerCase();
    if (code.startsWith('zh')) return 'zh';
    if (code.startsWith('en')) return 'en';
  }
  return 'en';
}

export function currentLang() {
  return lang;
}

export function locale() {
  return LOCALE[lang];
}

/**
 * Look a string up. `{name}` placeholders are filled from `vars`; when `vars.n` is given and the
 * catalogue has `key_one`/`key_other`, the plural form is chosen.
 */
export function t(key, vars) {
  return tIn(lang, key, vars);
}

/** `t` in a given language (a printed poster speaks both, whatever the page shows). */
export function tIn(language, key, vars) {
  const cat = CATALOGUES[language] || en;
  let s;
  if (vars && typeof vars.n === 'number') {
    const form = new Intl.PluralRules(LOCALE[language] || 'en').select(vars.n);
    s = cat[`${key}_${form}`] ?? cat[`${key}_other`];
  }
  if (s === undefined) s = cat[key] ?? en[key];
  if (s === undefined) return key;
  return vars ? s.replace(/\{(\w+)\}/g, (m, name) => (vars[name] !== undefined ? String(vars[name]) : m)) : s;
}

/** Fill static markup: data-i18n (text), data-i18n-placeholder, data-i18n-aria, data-i18n-title. */
export function translatePage(root = document) {
  document.documentElement.lang = LOCALE[lang];
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}

/** Change language, re-translate the static markup and tell the page (a `langchange` event). */
export function setLang(next) {
  if (!CATALOGUES[next] || next === lang) return;
  lang = next;
  try { localStorage.setItem(STORE_KEY, next); } catch { /* ignore */ }
  translatePage();
  window.dispatchEvent(new Event('langchange'));
}

export function otherLang() {
  return lang === 'zh' ? 'en' : 'zh';
}

export function formatDateTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Intl.DateTimeFormat(LOCALE[lang], {
    month: 'short', day: 'numeric', weekday: 'short', hour: '2-digit', minute: '2-digit',
  }).format(d);
}

export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Intl.DateTimeFormat(LOCALE[lang], { hour: '2-digit', minute: '2-digit' }).format(d);
}

/** "in 3 hours", "5 minutes ago" */
export function formatRelative(iso, now = Date.now()) {
  const d = new Date(iso).getTime();
  if (Number.isNaN(d)) return '';
  const diff = (d - now) / 1000;
  const abs = Math.abs(diff);
  const rtf = new Intl.RelativeTimeFormat(LOCALE[lang], { numeric: 'auto' });
  if (abs < 60) return rtf.format(Math.round(diff), 'second');
  if (abs < 3600) return rtf.format(Math.round(diff / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
  return rtf.format(Math.round(diff / 86400), 'day');
}

/** A countdown: "01:05:09" (hours, minutes, seconds) until `ms` from now; a day or more, `far` ("in 3 days"). */
export function formatCountdown(ms, far) {
  if (ms >= 86400000) return far;
  const sec = Math.max(0, Math.ceil(ms / 1000));
  const two = (n) => String(n).padStart(2, '0');
  return `${two(Math.floor(sec / 3600))}:${two(Math.floor(sec / 60) % 60)}:${two(sec % 60)}`;
}
