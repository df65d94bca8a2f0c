// The page chrome every page shares: language switch, connection indicator, offline banner.
import { $, h, setText, show, setChildren, stateBlock } from './dom.js';
import { t, translatePage, setLang, otherLang } from './i18n.js';

const LANG_NAMES = { en: 'English', zh: '中文' };

/** Wire the header. `onLang` runs after the language changed (re-render dynamic parts there). */
export function initChrome({ onLang } = {}) {
  translatePage();
  const button = $('#lang');
  if (button) {
    const label = () => {
      button.textContent = LANG_NAMES[otherLang()];
      button.setAttribute('aria-label', t('lang.switch'));
      button.lang = otherLang() === 'zh' ? 'zh-CN' : 'en';
    };
    label();
    button.addEventListener('click', () => setLang(otherLang()));
    window.addEventListener('langchange', () => {
      label();
      if (onLang) onLang();
    });
  } else if (onLang) {
    window.addEventListener('langchange', onLang);
  }
  return connectionIndicator();
}

/**
 * The dot in the header and, when the link is down for more than a moment, a banner.
 * Returns `set(status)` for the hub's `onStatus`, and `retry` wiring for the banner button.
 */
function connectionIndicator() {
  const dot = $('#conn');
  const banner = $('#banner');
  let status = 'connecting';
  let bannerTimer = null;
  let retry = null;

  function paint() {
    if (dot) {
      show(dot, true);
      dot.dataset.state = status;
      setText(dot, t(`conn.${status}`));
    }
    if (!banner) return;
    const message = {
      offline: t('banner.offline'),
      reconnecting: t('banner.reconnecting'),
      closed: t('banner.closed'),
      expired: t('banner.expired'),
      gone: t('banner.gone'),
    }[status];
    clearTimeout(bannerTimer);
    if (!message) {
      show(banner, false);
      return;
    }
    const render = () => {
      banner.className = status === 'reconnecting' || status === 'offline' ? 'banner' : 'banner bad';
      banner.textContent = message;
      if (retry && (status === 'reconnecting' || status === 'closed')) {
        banner.append(' ', h('button', { class: 'btn small', type: 'button', text: t('banner.retry'), onclick: retry }));
      }
      show(banner, true);
    };
    // A reconnect that succeeds within a moment is not worth a flashing banner.
    if (status === 'reconnecting') bannerTimer = setTimeout(render, 2500);
    else render();
  }

  window.addEventListener('langchange', paint);
  return {
    set(next) {
      status = next;
      paint();
    },
    onRetry(fn) {
      retry = fn;
    },
  };
}

/**
 * The whole-page state of a page that cannot work (no such session, a bad link), in `#fatal`.
 * `action(kind)` may return a button for it. Pages show and hide `#fatal` themselves.
 */
export function fatalScreen({ action } = {}) {
  let current = null; // { kind, title, detail } (i18n keys)
  function paint() {
    if (!current) return;
    const { kind, title, detail } = current;
    setChildren($('#fatal'), h('div', { class: 'card' },
      stateBlock(kind, t(title), detail ? t(detail) : '', action ? action(kind) : null)));
  }
  return {
    /** Remember and paint the failure (`kind` as for `stateBlock`). */
    set(kind, title, detail) {
      current = { kind, title, detail };
      paint();
    },
    clear() { current = null; },
    /** Paint again (after a language switch). */
    paint,
  };
}

/** The "n watching" label. */
export function viewersLabel(n) {
  return t('viewers', { n });
}

/** A status pill for a question. */
export function statusPill(status) {
  return h('span', { class: `pill ${status}`, text: t(`status.${status}`) });
}

/** Ask before something that cannot be undone (the browser's dialog: accessible, works everywhere). */
export function confirmAction(message) {
  return window.confirm(message);
}
