// Host page: create and schedule sessions, list them, hand out the links, print a QR poster.
import { $, h, setText, show, setChildren, toast, stateBlock } from './dom.js';
import { t, tIn, formatDateTime } from './i18n.js';
import { api, takeFragmentToken, saveJSON } from './api.js';
import { initChrome, confirmAction } from './ui.js';
import { loadLimits, applyMaxLength } from './limits.js';
import { loadSite, expertBadge, disclaimerIn } from './site.js';
import { loadRecording, formatClock } from './replay.js';
import { initLibrary, libraryVideos } from './host-library.js';

const TOKEN_KEY = 'oncolive.admin';
// The admin token lives 12 hours; keep it for this tab only.
let token = takeFragmentToken(TOKEN_KEY, 'session');
let sessions = null;      // null while loading
let listError = null;
const open = new Map();   // session id → { links, error } for the expanded rows
let editing = null;       // the session the form edits, or null when it creates one

initChrome({ onLang: () => { renderList(); renderTz(); if (lib) lib.repaint(); } });
let lib = null;
loadSite(); // the poster prints the operator's disclaimer
loadLimits().then(() => {
  applyMaxLength($('#f-title'), 'title_chars');
  applyMaxLength($('#f-topic'), 'topic_chars');
  applyMaxLength($('#f-expert'), 'expert_chars');
});

function showSignin(message) {
  show($('#host'), false);
  show($('#signin'), true);
  if (message) toast(message, { bad: true });
}

$('#signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const value = $('#signin-token').value.trim();
  if (!value) return;
  token = value;
  saveJSON(TOKEN_KEY, token, 'session');
  $('#signin-token').value = '';
  start();
});

function start() {
  if (!token) return showSignin();
  show($('#signin'), false);
  show($('#host'), true);
  defaultStart();
  renderTz();
  load();
  if (!lib) lib = initLibrary({ token: () => token, authFailed, onChange: renderList });
}

/** 401 from an admin call: the token is wrong or expired; ask for a new one. */
function authFailed(err) {
  if (err.status === 401 || err.status === 403) {
    token = null;
    saveJSON(TOKEN_KEY, null, 'session');
    showSignin(t('host.tokenRejected'));
    return true;
  }
  return false;
}

// ---- create ----

function pad(n) { return String(n).padStart(2, '0'); }

function defaultStart() {
  const input = $('#f-start');
  if (input.value) return;
  const d = new Date(Date.now() + 60 * 60 * 1000);
  d.setMinutes(0, 0, 0);
  input.value = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function renderTz() {
  let zone = '';
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch { /* ignore */ }
  setText($('#f-tz'), t('host.tzHint', { zone }));
}

$('#create').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target;
  const error = $('#create-error');
  const title = $('#f-title').value.trim();
  const expert = $('#f-expert').value.trim();
  const start = new Date($('#f-start').value);
  const problems = [];
  if (!title) problems.push(t('host.needTitle'));
  if (!expert) problems.push(t('host.needExpert'));
  if (Number.isNaN(start.getTime())) problems.push(t('host.needStart'));
  if (problems.length) {
    setText(error, problems.join(' '));
    show(error, true);
    return;
  }
  const profile = readProfile(expert);
  if (profile === false) {
    setText(error, t('host.pLicenceMasked'));
    show(error, true);
    $('#p-licence').focus();
    return;
  }
  show(error, false);
  const body = {
    title,
    topic: $('#f-topic').value.trim(),
    expert_name: expert,
    scheduled_start: start.toISOString(),
    moderation: form.querySelector('input[name="moderation"]:checked').value,
  };
  if (profile) body.expert_profile = profile;
  const button = $('#create-btn');
  button.disabled = true;
  if (editing) {
    if (editing.state !== 'scheduled') {
      delete body.scheduled_start;
      delete body.moderation;
    }
    try {
      await api(`/api/sessions/${encodeURIComponent(editing.id)}`, { method: 'PATCH', token, body });
      toast(t('host.saved'));
      stopEditing();
      await load();
    } catch (err) {
      if (authFailed(err)) return;
      setText(error, err.status === 400 || err.status === 409 ? `${t('err.invalid')} (${err.message})` : t(err.status === 0 ? 'error.network' : 'error.generic'));
      show(error, true);
    } finally {
      button.disabled = false;
    }
    return;
  }
  try {
    const data = await api('/api/sessions', { method: 'POST', token, body });
    open.set(data.session.id, { links: data.links });
    $('#f-title').value = '';
    $('#f-topic').value = '';
    fillProfile(null);
    toast(t('host.created'));
    await load();
    const row = document.querySelector(`[data-session="${CSS.escape(data.session.id)}"]`);
    if (row && row.scrollIntoView) row.scrollIntoView({ block: 'start', behavior: 'smooth' });
  } catch (err) {
    if (authFailed(err)) return;
    setText(error, err.status === 400 ? `${t('err.invalid')} (${err.message})` : t(err.status === 0 ? 'error.network' : 'error.generic'));
    show(error, true);
  } finally {
    button.disabled = false;
  }
});

// ---- the expert's profile (the badge patients see) ----

const PROFILE_FIELDS = ['name', 'title', 'hospital', 'department', 'licence'];

/**
 * The profile from the form: null when nothing was entered (no badge), false when the licence is
 * still the masked copy shown to everyone (sending it back would store the stars).
 */
function readProfile(expertName) {
  const p = {};
  for (const f of PROFILE_FIELDS) p[f] = $(`#p-${f}`).value.trim();
  p.verified = $('#p-verified').checked;
  const any = PROFILE_FIELDS.some((f) => p[f]) || p.verified;
  if (!any) return editing && editing.expert_profile ? { ...p, name: expertName } : null;
  if (p.licence.includes('*')) return false;
  if (!p.name) p.name = expertName;
  return p;
}

function fillProfile(profile) {
  for (const f of PROFILE_FIELDS) $(`#p-${f}`).value = (profile && profile[f]) || '';
  $('#p-verified').checked = !!(profile && profile.verified);
}

// ---- editing: the same form, filled with the session ----

function toLocalInput(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function startEditing(listed) {
  // The list is public, so its licence numbers are masked; the host's links reply is not
  // (docs/protocol.md).
  let s = listed;
  try {
    const data = await api(`/api/sessions/${encodeURIComponent(listed.id)}/links`, { token });
    if (data && data.session) s = data.session;
  } catch (err) {
    if (authFailed(err)) return;
  }
  editing = s;
  fillProfile(s.expert_profile);
  $('#f-title').value = s.title;
  $('#f-topic').value = s.topic || '';
  $('#f-expert').value = s.expert_name;
  $('#f-start').value = toLocalInput(s.scheduled_start);
  const locked = s.state !== 'scheduled';
  $('#f-start').disabled = locked;
  for (const radio of document.querySelectorAll('input[name="moderation"]')) {
    radio.checked = radio.value === s.moderation;
    radio.disabled = locked;
  }
  setText($('#form-title'), t('host.editTitle'));
  setText($('#create-btn'), t('host.save'));
  show($('#cancel-edit'), true);
  const error = $('#create-error');
  setText(error, locked ? t('host.liveLocked') : '');
  show(error, locked);
  const form = $('#create');
  if (form.scrollIntoView) form.scrollIntoView({ block: 'start', behavior: 'smooth' });
  $('#f-title').focus();
}

function stopEditing() {
  editing = null;
  $('#f-title').value = '';
  $('#f-topic').value = '';
  $('#f-start').disabled = false;
  $('#f-start').value = '';
  fillProfile(null);
  defaultStart();
  for (const radio of document.querySelectorAll('input[name="moderation"]')) {
    radio.disabled = false;
    radio.checked = radio.value === 'pre';
  }
  setText($('#form-title'), t('host.createTitle'));
  setText($('#create-btn'), t('host.create'));
  show($('#cancel-edit'), false);
  show($('#create-error'), false);
}

$('#cancel-edit').addEventListener('click', stopEditing);

// ---- list ----

$('#refresh').addEventListener('click', load);

async function load() {
  listError = null;
  if (sessions === null) renderList();
  try {
    const data = await api('/api/sessions');
    sessions = data.sessions || [];
  } catch (err) {
    listError = err.status === 0 ? 'error.network' : 'error.generic';
  }
  renderList();
}

async function toggleLinks(id) {
  if (open.has(id) && open.get(id).links) {
    open.delete(id);
    return renderList();
  }
  open.set(id, { loading: true });
  renderList();
  try {
    const data = await api(`/api/sessions/${encodeURIComponent(id)}/links`, { token });
    open.set(id, { links: data.links });
    refreshRecording(id);
  } catch (err) {
    if (authFailed(err)) return;
    open.set(id, { error: err.status === 0 ? 'error.network' : 'error.generic' });
  }
  renderList();
}

/** Replace a session's expert and moderator links (one leaked): the old ones stop at once. */
async function rotateLinks(id) {
  if (!confirmAction(t('host.confirmRotate'))) return;
  try {
    const data = await api(`/api/sessions/${encodeURIComponent(id)}/links/rotate`, { method: 'POST', token });
    open.set(id, { links: data.links });
    toast(t('host.rotated'));
  } catch (err) {
    if (authFailed(err)) return;
    toast(t(err.status === 0 ? 'error.network' : 'error.generic'), { bad: true });
  }
  renderList();
}

async function endSession(s) {
  if (!confirmAction(t(s.state === 'scheduled' ? 'host.confirmCancel' : 'expert.confirmEnd'))) return;
  try {
    await api(`/api/sessions/${encodeURIComponent(s.id)}/state`, { method: 'POST', token, body: { state: 'ended' } });
    await load();
  } catch (err) {
    if (!authFailed(err)) toast(t('error.generic'), { bad: true });
  }
}

function copy(text, input) {
  const done = () => toast(t('host.copied'));
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(input, done));
  } else fallbackCopy(input, done);
}

function fallbackCopy(input, done) {
  input.select();
  try { if (document.execCommand('copy')) done(); } catch { /* the text is selected; the user can copy it */ }
}

function linkRow(labelKey, url, name) {
  const input = h('input', { type: 'text', readonly: true, value: url, 'aria-label': t(labelKey), dataset: { link: name } });
  input.addEventListener('focus', () => input.select());
  return [
    h('dt', { text: t(labelKey) }),
    h('dd', null, input, h('div', { class: 'controls' },
      h('button', { class: 'btn small', type: 'button', text: t('host.copy'), onclick: () => copy(url, input) }),
      h('a', { class: 'btn small', href: url, target: '_blank', rel: 'noopener', text: t('host.open') }))),
  ];
}

/** Download the session's public Q&A (redacted, no identities) in `format`. */
async function exportSession(s, format) {
  let res;
  try {
    res = await fetch(`/api/sessions/${encodeURIComponent(s.id)}/export?format=${format}`, {
      headers: { Authorization: `Bearer ${token}` }, cache: 'no-store',
    });
  } catch {
    toast(t('error.network'), { bad: true });
    return;
  }
  if (res.status === 401 || res.status === 403) {
    authFailed({ status: res.status });
    return;
  }
  if (!res.ok) {
    toast(t('error.generic'), { bad: true });
    return;
  }
  const blob = await res.blob();
  const disposition = res.headers.get('Content-Disposition') || '';
  const named = /filename="?([^";]+)"?/i.exec(disposition);
  const a = h('a', { href: URL.createObjectURL(blob), download: named ? named[1] : `oncolive-${s.id}.${format}`, hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ---- recording and attached videos (issue 12) ----

async function refreshRecording(id) {
  let rec;
  try { rec = await loadRecording(id); } catch { rec = undefined; }
  const info = open.get(id);
  if (!info) return;
  info.recording = rec === undefined ? 'error' : rec;
  renderList();
}

function replaceSession(next) {
  if (!next || !sessions) return;
  sessions = sessions.map((x) => (x.id === next.id ? { ...x, ...next } : x));
}

async function patchSession(s, body, doneKey) {
  try {
    const data = await api(`/api/sessions/${encodeURIComponent(s.id)}`, { method: 'PATCH', token, body });
    replaceSession(data && data.session ? data.session : { ...s, ...body });
    toast(t(doneKey));
  } catch (err) {
    if (authFailed(err)) return;
    toast(err.status === 410 ? t('host.endedLocked') : t(err.status === 0 ? 'error.network' : 'error.generic'), { bad: true });
  }
  renderList();
}

async function deleteRecording(s) {
  if (!confirmAction(t('host.confirmDeleteRecording', { title: s.title }))) return;
  try {
    await api(`/api/sessions/${encodeURIComponent(s.id)}/recording`, { method: 'DELETE', token });
    const info = open.get(s.id);
    if (info) info.recording = null;
    toast(t('host.recordingDeleted'));
  } catch (err) {
    if (authFailed(err)) return;
    toast(t(err.status === 0 ? 'error.network' : 'error.generic'), { bad: true });
  }
  renderList();
}

/** One archive link, or one per part when the codec or the picture size changed mid-broadcast. */
function downloadLinks(rec) {
  const parts = Array.isArray(rec.parts) ? rec.parts : [];
  if (parts.length <= 1) return [h('a', { class: 'btn small', href: rec.download, download: '', text: t('host.downloadRecording') })];
  return parts.map((p, i) => h('a', {
    class: 'btn small', href: p.download, download: '', dataset: { part: String(p.index) },
    text: t('host.downloadPart', { n: i + 1, container: String(p.container || '').toUpperCase() }),
  }));
}

function recordingBlock(s, info, patientUrl) {
  const rec = info.recording;
  const toggle = h('label', { class: 'check' },
    h('input', {
      type: 'checkbox', checked: s.record !== false, disabled: s.state === 'ended', dataset: { record: s.id },
      onchange: (e) => patchSession(s, { record: e.target.checked }, e.target.checked ? 'host.recordOn' : 'host.recordOff'),
    }),
    h('span', { text: t('host.record') }));
  let status;
  if (rec === undefined) status = h('p', { class: 'lead-hint', text: t('loading') });
  else if (rec === 'error') status = h('p', { class: 'lead-hint', text: t('error.generic') });
  else if (!rec) status = h('p', { class: 'lead-hint', dataset: { recording: 'none' }, text: t('host.noRecording') });
  else {
    status = h('div', { dataset: { recording: rec.state } },
      h('p', { class: 'lead-hint', text: t(rec.state === 'recording' ? 'host.recordingNow' : 'host.recordingDone', { duration: formatClock(rec.duration_ms), mb: (rec.bytes / 1048576).toFixed(1) }) }),
      h('div', { class: 'controls' },
        s.state === 'ended' ? h('a', { class: 'btn small', href: patientUrl, target: '_blank', rel: 'noopener', text: t('host.openReplay') }) : null,
        ...downloadLinks(rec),
        h('button', { class: 'btn small ghost', type: 'button', dataset: { deleteRecording: s.id }, text: t('host.deleteRecording'), onclick: () => deleteRecording(s) })));
  }
  return h('div', { class: 'host-block' }, h('h3', { text: t('host.recording') }), toggle, status);
}

function attachBlock(s) {
  const attached = Array.isArray(s.videos) ? s.videos : [];
  const all = libraryVideos();
  const title = (id) => (all.find((v) => String(v.id) === String(id)) || {}).title || id;
  const locked = s.state === 'ended';
  const select = h('select', { 'aria-label': t('host.attachWhich'), dataset: { attach: s.id } },
    all.map((v) => h('option', { value: v.id, text: v.title })));
  const when = h('select', { 'aria-label': t('host.attachWhen'), dataset: { attachWhen: s.id } },
    h('option', { value: 'before', text: t('host.when.before') }), h('option', { value: 'after', text: t('host.when.after') }));
  const add = () => {
    if (!select.value) return;
    const next = attached.filter((a) => !(String(a.video) === select.value && a.when === when.value)).concat([{ video: select.value, when: when.value }]);
    patchSession(s, { videos: next }, 'host.attached');
  };
  return h('div', { class: 'host-block' },
    h('h3', { text: t('host.attachTitle') }),
    attached.length ? h('ul', { class: 'attached-admin' }, attached.map((a) => h('li', null,
      h('span', { class: 'grow', text: `${title(a.video)} · ${t(`host.when.${a.when === 'after' ? 'after' : 'before'}`)}` }),
      locked ? null : h('button', { class: 'btn small ghost', type: 'button', text: t('host.detach'),
        onclick: () => patchSession(s, { videos: attached.filter((x) => x !== a) }, 'host.detached') }))))
      : h('p', { class: 'lead-hint', text: t('host.noAttached') }),
    locked ? null : all.length ? h('div', { class: 'attach-row' }, select, when,
      h('button', { class: 'btn small', type: 'button', text: t('host.attach'), onclick: add }))
      : h('p', { class: 'lead-hint', text: t('host.attachNoVideos') }));
}

function qrSrc(id) {
  // Same origin on purpose: the CSP only allows images from 'self'.
  return `/api/sessions/${encodeURIComponent(id)}/qr.svg`;
}

function printPoster(s, patientUrl) {
  const old = document.querySelector('.print-root');
  if (old) old.remove();
  // A poster hangs in a ward: it speaks both languages whatever the host's page shows.
  const root = h('div', { class: 'print-root' }, h('div', { class: 'poster' },
    h('div', { class: 'p-title', text: s.title }),
    s.topic ? h('div', { class: 'p-sub', text: s.topic }) : null,
    h('div', { class: 'p-sub', text: `${s.expert_name} · ${formatDateTime(s.scheduled_start)}` }),
    // A poster speaks both languages; a wall needs no licence number, masked or not.
    expertBadge(s.expert_profile, (key, vars) => `${tIn('zh', key, vars)} / ${tIn('en', key, vars)}`, { licence: false }),
    h('img', { src: qrSrc(s.id), alt: patientUrl }),
    h('div', { class: 'p-how', lang: 'zh-CN', text: tIn('zh', 'poster.how') }),
    h('div', { class: 'p-how', lang: 'en', text: tIn('en', 'poster.how') }),
    h('div', { class: 'p-url', text: patientUrl }),
    // Paper cannot hold a calendar link, and a second code would leave people unsure which to
    // scan: the one code leads to the waiting page, which offers the calendar; the poster says so.
    s.state === 'scheduled' ? h('div', { class: 'p-cal', lang: 'zh-CN', text: tIn('zh', 'poster.calendar') }) : null,
    s.state === 'scheduled' ? h('div', { class: 'p-cal', lang: 'en', text: tIn('en', 'poster.calendar') }) : null,
    h('div', { class: 'p-disclaimer', lang: 'zh-CN', text: disclaimerIn('zh') }),
    h('div', { class: 'p-disclaimer', lang: 'en', text: disclaimerIn('en') })));
  document.body.appendChild(root);
  const img = root.querySelector('img');
  const go = () => window.print();
  if (img.complete) go(); else { img.addEventListener('load', go, { once: true }); img.addEventListener('error', go, { once: true }); }
}

function sessionRow(s) {
  const state = h('span', { class: `pill state-pill ${s.state}`, text: t(`state.${s.state}`) });
  const info = open.get(s.id);
  const buttons = h('div', { class: 'controls' },
    h('button', { class: 'btn small', type: 'button', 'aria-expanded': String(!!(info && info.links)), text: t('host.links'), onclick: () => toggleLinks(s.id) }),
    s.state !== 'ended' ? h('button', { class: 'btn small ghost', type: 'button', text: t('host.edit'), dataset: { edit: s.id }, onclick: () => startEditing(s) }) : null,
    s.state !== 'ended' ? h('button', { class: 'btn small ghost', type: 'button', text: t(s.state === 'scheduled' ? 'host.cancel' : 'expert.end'), onclick: () => endSession(s) }) : null);
  let details = null;
  if (info && info.loading) details = stateBlock('loading', t('loading'));
  else if (info && info.error) details = stateBlock('error', t(info.error));
  else if (info && info.links) {
    const l = info.links;
    details = h('div', { class: 'panel' },
      h('dl', { class: 'links' },
        linkRow('host.patientLink', l.patient, 'patient'),
        linkRow('host.expertLink', l.expert, 'expert'),
        linkRow('host.moderatorLink', l.moderator, 'moderator'),
        // the hall's projector: public like the patient link (it shows what any patient sees)
        s.state !== 'ended' ? linkRow('host.venueLink', `${l.patient}/venue`, 'venue') : null),
      h('p', { class: 'hint', text: t('host.secretHint') }),
      h('div', { class: 'controls' },
        h('button', { class: 'btn small ghost', type: 'button', text: t('host.rotate'), dataset: { rotate: s.id }, onclick: () => rotateLinks(s.id) })),
      h('div', { class: 'controls exports' }, h('span', { class: 'small', text: t('host.export') }),
        ['md', 'csv', 'json'].map((f) => h('button', { class: 'btn small', type: 'button', dataset: { export: f }, text: t(`host.export.${f}`), onclick: () => exportSession(s, f) }))),
      h('div', { class: 'row' },
        h('img', { class: 'qr', src: qrSrc(s.id), alt: t('host.qrAlt'), width: 180, height: 180 }),
        h('button', { class: 'btn', type: 'button', text: t('host.print'), onclick: () => printPoster(s, l.patient) })),
      recordingBlock(s, info, l.patient),
      attachBlock(s));
  }
  return h('li', { class: `session-card ${s.state}`, dataset: { session: s.id } },
    h('div', { class: 'row' }, h('span', { class: 't grow', text: s.title }), state),
    h('div', { class: 'sub', text: `${t('session.expert', { name: s.expert_name })} · ${formatDateTime(s.scheduled_start)} · ${t(s.moderation === 'post' ? 'mod.post' : 'mod.pre')}` }),
    buttons, details);
}

function renderList() {
  const list = $('#sessions');
  if (listError) {
    return setChildren(list, h('li', null, stateBlock('error', t(listError), '',
      h('button', { class: 'btn', type: 'button', text: t('retry'), onclick: load }))));
  }
  if (sessions === null) return setChildren(list, h('li', null, stateBlock('loading', t('loading'))));
  if (!sessions.length) return setChildren(list, h('li', null, stateBlock('empty', t('host.noSessions'))));
  setChildren(list, sessions.map(sessionRow));
}

start();
