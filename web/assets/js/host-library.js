// The host's side of the video library: upload (tus, resumable, also after a reload), the list
// with edit and delete. The server checks every file (MP4, H.264 + AAC or Opus, at most 100 MB and
// 10 minutes); the page only checks the size and the name first, for a quick answer.
import { $, h, setText, show, setChildren, toast, stateBlock } from './dom.js';
import { t } from './i18n.js';
import { api, loadJSON, saveJSON } from './api.js';
import { confirmAction } from './ui.js';
import { TusUpload, DEFAULT_CHUNK } from './tus.js';
import { loadVideos, renderVideos, videoMeta } from './library.js';

const MAX_BYTES = 100 * 1024 * 1024;
const PENDING_KEY = 'oncolive.upload';
// Smaller chunks lose less on a bad link; a test (or a host on a very slow line) may set it.
const CHUNK_KEY = 'oncolive.uploadChunk';
const REASONS = ['not_mp4', 'no_video', 'unsupported_video_codec', 'unsupported_audio_codec', 'too_long', 'too_large', 'truncated', 'network', 'unauthorized', 'server'];

let ctx = null;
let videos = null;
let listError = null;
let upload = null;       // the TusUpload running or paused
let uploadState = 'idle'; // idle, sending, paused
const editing = new Set();

export function libraryVideos() {
  return videos || [];
}

/** The text for a refusal, in the reader's language. */
export function reasonText(err) {
  if (err && REASONS.includes(err.code)) return t(`lib.err.${err.code}`);
  return `${t('lib.err.other')}${err && err.message ? ` (${err.message})` : ''}`;
}

function chunkSize() {
  const n = Number(loadJSON(CHUNK_KEY));
  return Number.isFinite(n) && n >= 16 * 1024 ? n : DEFAULT_CHUNK;
}

function mb(bytes) {
  return (bytes / (1024 * 1024)).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0);
}

// ---- the pending upload, kept across reloads ----

const pending = () => loadJSON(PENDING_KEY);
const sameFile = (p, f) => !!p && !!f && p.name === f.name && p.size === f.size && p.lastModified === f.lastModified;

function renderPending() {
  const box = $('#up-pending');
  const p = pending();
  if (!p || uploadState !== 'idle') { show(box, false); return; }
  const file = $('#u-file').files[0];
  const wrong = file && !sameFile(p, file);
  setChildren(box,
    h('p', { class: 'up-pending-text', text: t('host.uPending', { name: p.name, mb: mb(p.size) }) }),
    wrong ? h('p', { class: 'up-error', text: t('host.uNotSame', { name: p.name }) }) : null,
    h('div', { class: 'controls' },
      h('button', { class: 'btn ghost', type: 'button', text: t('host.uDiscard'), onclick: discardPending })));
  show(box, true);
}

async function discardPending() {
  const p = pending();
  saveJSON(PENDING_KEY, null);
  if (p && p.url) {
    // tus termination: the server frees what it holds
    fetch(p.url, { method: 'DELETE', headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${ctx.token()}` } }).catch(() => {});
  }
  renderPending();
  renderUpload();
}

// ---- the form ----

function fields() {
  return {
    title: $('#u-title').value.trim(),
    topic: $('#u-topic').value.trim(),
    expert: $('#u-expert').value.trim(),
    language: $('#u-language').value,
  };
}

function showError(text) {
  setText($('#u-error'), text || '');
  show($('#u-error'), !!text);
}

function renderUpload(sent, total) {
  const busy = uploadState !== 'idle';
  show($('#u-progress'), busy);
  if (busy && total) {
    const pct = Math.floor((sent / total) * 100);
    $('#u-bar').value = pct;
    setText($('#u-pct'), t(uploadState === 'paused' ? 'host.uPausedAt' : 'host.uSent', { pct, sent: mb(sent), total: mb(total) }));
  }
  show($('#u-start'), !busy);
  show($('#u-pause'), uploadState === 'sending');
  show($('#u-resume'), uploadState === 'paused');
  show($('#u-cancel'), busy);
  for (const id of ['#u-file', '#u-title', '#u-topic', '#u-expert', '#u-language']) $(id).disabled = busy;
  const p = pending();
  setText($('#u-start'), t(p && sameFile(p, $('#u-file').files[0]) ? 'host.uContinue' : 'host.uStart'));
}

/** The quick checks before anything is sent. */
function check(file, meta) {
  if (!file) return t('host.uNeedFile');
  if (!/\.mp4$/i.test(file.name)) return t('lib.err.not_mp4');
  if (file.size > MAX_BYTES) return t('lib.err.too_large');
  if (file.size === 0) return t('lib.err.truncated');
  if (!meta.title) return t('host.uNeedTitle');
  return null;
}

async function startUpload() {
  const file = $('#u-file').files[0];
  const meta = fields();
  const problem = check(file, meta);
  if (problem) return showError(problem);
  showError(null);
  const p = pending();
  const resume = sameFile(p, file) ? p.url : null;
  if (p && !resume) saveJSON(PENDING_KEY, null);
  const keep = (url) => saveJSON(PENDING_KEY, url ? {
    url, name: file.name, size: file.size, lastModified: file.lastModified, ...meta,
  } : null);
  upload = new TusUpload(file, {
    token: ctx.token(), chunkSize: chunkSize(), url: resume,
    metadata: { ...meta, filename: file.name },
    onUrl: keep,
    onProgress: (sent, total) => renderUpload(sent, total),
  });
  run();
}

async function run() {
  uploadState = 'sending';
  renderPending();
  renderUpload(upload.offset, upload.file.size);
  try {
    const result = await upload.start();
    saveJSON(PENDING_KEY, null);
    uploadState = 'idle';
    upload = null;
    $('#upload').reset();
    toast(t('host.uDone'));
    renderUpload();
    await loadLibrary();
    if (result && result.video) {
      const li = document.querySelector(`#lib-admin [data-video="${CSS.escape(result.video)}"]`);
      if (li && li.scrollIntoView) li.scrollIntoView({ block: 'nearest' });
    }
  } catch (err) {
    if (err && err.name === 'AbortError') {
      uploadState = 'paused';
      renderUpload(upload.offset, upload.file.size);
      return;
    }
    if (err && err.code === 'unauthorized' && ctx.authFailed({ status: 401 })) return;
    uploadState = err && err.code === 'network' ? 'paused' : 'idle';
    // a refusal is final: the server kept nothing, so neither do we
    if (uploadState === 'idle') {
      saveJSON(PENDING_KEY, null);
      upload = null;
    }
    showError(reasonText(err));
    renderUpload(upload ? upload.offset : 0, upload ? upload.file.size : 0);
  }
}

// ---- the list ----

async function loadLibrary() {
  listError = null;
  try {
    videos = await loadVideos({ fresh: true });
  } catch (err) {
    listError = err.status === 0 ? 'error.network' : 'error.generic';
  }
  renderLibrary();
  if (ctx.onChange) ctx.onChange();
}

async function remove(v) {
  if (!confirmAction(t('host.libConfirmDelete', { title: v.title }))) return;
  try {
    await api(`/api/videos/${encodeURIComponent(v.id)}`, { method: 'DELETE', token: ctx.token() });
    toast(t('host.libDeleted'));
  } catch (err) {
    if (ctx.authFailed(err)) return;
    toast(t(err.status === 0 ? 'error.network' : 'error.generic'), { bad: true });
  }
  await loadLibrary();
}

function editor(v) {
  const input = (key, value, max) => h('input', { type: 'text', value: value || '', maxlength: max, dataset: { field: key }, 'aria-label': t(`host.u${key[0].toUpperCase()}${key.slice(1)}`) });
  const lang = h('select', { dataset: { field: 'language' }, 'aria-label': t('host.uLanguage') },
    h('option', { value: 'zh', text: t('lib.lang.zh') }), h('option', { value: 'en', text: t('lib.lang.en') }));
  lang.value = v.language === 'en' ? 'en' : 'zh';
  const form = h('form', { class: 'panel lib-edit' },
    h('label', { text: t('host.uTitle') }), input('title', v.title, 200),
    h('label', { text: t('host.uTopic') }), input('topic', v.topic, 200),
    h('label', { text: t('host.uExpert') }), input('expert', v.expert, 100),
    h('label', { text: t('host.uLanguage') }), lang,
    h('div', { class: 'controls' },
      h('button', { class: 'btn primary', type: 'submit', text: t('host.save') }),
      h('button', { class: 'btn ghost', type: 'button', text: t('cancel'), onclick: () => { editing.delete(v.id); renderLibrary(); } })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {};
    for (const el of form.querySelectorAll('[data-field]')) body[el.dataset.field] = el.value.trim();
    if (!body.title) return toast(t('host.uNeedTitle'), { bad: true });
    try {
      await api(`/api/videos/${encodeURIComponent(v.id)}`, { method: 'PATCH', token: ctx.token(), body });
      editing.delete(v.id);
      toast(t('host.saved'));
      await loadLibrary();
    } catch (err) {
      if (!ctx.authFailed(err)) toast(t(err.status === 0 ? 'error.network' : 'error.generic'), { bad: true });
    }
  });
  return form;
}

function renderLibrary() {
  const list = $('#lib-admin');
  if (listError && !videos) {
    delete list.dataset.ids;
    return setChildren(list, h('li', null, stateBlock('error', t(listError), '', h('button', { class: 'btn', type: 'button', text: t('retry'), onclick: loadLibrary }))));
  }
  if (!videos) { delete list.dataset.ids; return setChildren(list, h('li', null, stateBlock('loading', t('loading')))); }
  if (!videos.length) { delete list.dataset.ids; return setChildren(list, h('li', null, stateBlock('empty', t('lib.empty')))); }
  // the cards play in place (library.js); each gets the host's buttons under it
  delete list.dataset.ids;
  renderVideos(list, videos);
  for (const li of Array.from(list.children)) {
    const v = li.lib.video;
    li.append(editing.has(v.id) ? editor(v) : h('div', { class: 'controls lib-actions' },
      h('button', { class: 'btn small', type: 'button', text: t('host.edit'), dataset: { edit: v.id }, onclick: () => { editing.add(v.id); renderLibrary(); } }),
      h('button', { class: 'btn small ghost', type: 'button', text: t('host.libDelete'), dataset: { delete: v.id }, onclick: () => remove(v) })));
  }
}

/** Wire the library section. `token()` gives the admin token; `authFailed(err)` as host.js has it. */
export function initLibrary({ token, authFailed, onChange }) {
  ctx = { token, authFailed, onChange };
  $('#upload').addEventListener('submit', (e) => {
    e.preventDefault();
    if (uploadState === 'idle') startUpload();
  });
  $('#u-pause').addEventListener('click', () => { if (upload) upload.pause(); });
  $('#u-resume').addEventListener('click', () => { if (upload) { showError(null); run(); } });
  $('#u-cancel').addEventListener('click', () => {
    if (upload) upload.pause();
    upload = null;
    uploadState = 'idle';
    discardPending();
    showError(null);
  });
  $('#u-file').addEventListener('change', () => {
    showError(null);
    const file = $('#u-file').files[0];
    const p = pending();
    if (file && !/\.mp4$/i.test(file.name)) showError(t('lib.err.not_mp4'));
    else if (file && file.size > MAX_BYTES) showError(t('lib.err.too_large'));
    if (file && sameFile(p, file)) {
      // the same file as the unfinished upload: its details come back with it
      for (const k of ['title', 'topic', 'expert']) if (!$(`#u-${k}`).value) $(`#u-${k}`).value = p[k] || '';
      if (p.language) $('#u-language').value = p.language;
    }
    renderPending();
    renderUpload();
  });
  $('#lib-refresh').addEventListener('click', loadLibrary);
  const p = pending();
  if (p) {
    for (const k of ['title', 'topic', 'expert']) $(`#u-${k}`).value = p[k] || '';
    if (p.language) $('#u-language').value = p.language;
  }
  renderPending();
  renderUpload();
  loadLibrary();
  return {
    repaint() {
      renderPending();
      renderUpload(upload ? upload.offset : 0, upload ? upload.file.size : 0);
      delete $('#lib-admin').dataset.ids;
      renderLibrary();
    },
    reload: loadLibrary,
  };
}

export { videoMeta };
