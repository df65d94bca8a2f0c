// Session list for patients who arrive without a link: live now, upcoming, ended.
import { $, h, setChildren, stateBlock } from './dom.js';
import { t, formatDateTime, formatRelative } from './i18n.js';
import { api } from './api.js';
import { initChrome } from './ui.js';
import { loadVideos, renderVideos } from './library.js';

const REFRESH_MS = 30000;
let sessions = null;
let error = null;

initChrome({ onLang: () => { render(); renderLibrary(); } });

function card(s) {
  const when = s.state === 'live' ? t('index.liveSince', { time: formatDateTime(s.started_at || s.scheduled_start) })
    : s.state === 'scheduled' ? `${formatDateTime(s.scheduled_start)} (${formatRelative(s.scheduled_start)})`
      : formatDateTime(s.ended_at || s.scheduled_start);
  const calendar = s.state === 'scheduled';
  return h('li', { class: `session-item${calendar ? ' with-calendar' : ''}`, dataset: { session: s.id } },
    h('a', { class: `session-card ${s.state}`, href: `/s/${encodeURIComponent(s.id)}` },
      h('div', { class: 'row' }, h('span', { class: 't grow', text: s.title }),
        h('span', { class: `pill state-pill ${s.state}`, text: t(`state.${s.state}`) })),
      h('div', { class: 'sub', text: t('session.expert', { name: s.expert_name }) }),
      s.topic ? h('div', { class: 'sub', text: s.topic }) : null,
      h('div', { class: 'sub', text: when })),
    // in the card but outside its link: a link inside a link would not be one of its own
    calendar ? h('a', {
      class: 'btn calendar-link', href: calendarUrl(s), dataset: { calendar: s.id },
      'aria-label': t('index.calendarLabel', { title: s.title }), text: t('index.calendar'),
    }) : null);
}

/** The session's "add to calendar" file (RFC 5545, with the patient link and a reminder 15 minutes before). */
function calendarUrl(s) {
  return `/api/sessions/${encodeURIComponent(s.id)}/calendar.ics`;
}

function group(titleKey, items) {
  if (!items.length) return null;
  return h('section', null, h('h2', { text: t(titleKey) }), h('ul', { class: 'sessions' }, items.map(card)));
}

function render() {
  const list = $('#list');
  if (error && !sessions) {
    return setChildren(list, stateBlock(navigator.onLine === false ? 'offline' : 'error', t(navigator.onLine === false ? 'banner.offline' : error), '',
      h('button', { class: 'btn', type: 'button', text: t('retry'), onclick: load })));
  }
  if (!sessions) return setChildren(list, stateBlock('loading', t('loading')));
  if (!sessions.length) return setChildren(list, stateBlock('empty', t('index.empty')));
  setChildren(list,
    group('index.live', sessions.filter((s) => s.state === 'live')),
    group('index.upcoming', sessions.filter((s) => s.state === 'scheduled')),
    group('index.ended', sessions.filter((s) => s.state === 'ended')));
}

async function load() {
  try {
    const data = await api('/api/sessions');
    sessions = data.sessions || [];
    error = null;
  } catch (err) {
    error = err.status === 0 ? 'error.network' : 'error.generic';
  }
  render();
}

// ---- the popular-science library ----

let videos = null;
let videosError = null;
let langFilter = '';

function renderLibrary() {
  const state = $('#lib-state');
  for (const b of document.querySelectorAll('#lib-filter button')) b.setAttribute('aria-pressed', String(b.dataset.lang === langFilter));
  if (videosError && !videos) {
    setChildren(state, stateBlock('error', t(videosError), '', h('button', { class: 'btn', type: 'button', text: t('retry'), onclick: loadLibrary })));
    return;
  }
  if (!videos) return setChildren(state, stateBlock('loading', t('loading')));
  const shown = langFilter ? videos.filter((v) => v.language === langFilter) : videos;
  setChildren(state, shown.length ? null : stateBlock('empty', t(videos.length ? 'lib.emptyLang' : 'lib.empty')));
  renderVideos($('#lib-list'), shown);
}

async function loadLibrary() {
  try {
    videos = await loadVideos({ fresh: true });
    videosError = null;
  } catch (err) {
    videosError = err.status === 0 ? 'error.network' : 'error.generic';
  }
  renderLibrary();
}

for (const b of document.querySelectorAll('#lib-filter button')) {
  b.addEventListener('click', () => {
    langFilter = b.dataset.lang;
    renderLibrary();
  });
}

load();
loadLibrary();
setInterval(() => { if (document.visibilityState === 'visible') load(); }, REFRESH_MS);
window.addEventListener('online', load);
