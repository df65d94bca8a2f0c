// Moderator console: screen questions as they arrive. Each question shows what the patient
// typed with every personal detail and blocked word marked; approving publishes the redacted
// text (the original only on an explicit, confirmed choice). Reject with a reason code, edit,
// merge (into a suggested duplicate with one key), pin, triage, mute the author, keep the
// session's blocked words. Keyboard: j/k move, a approve, r reject, e edit, m merge into the top
// suggestion (Shift+M: choose), p pin, Esc close, 1–7 pick a reason while rejecting.
import { $, $$, h, setText, show, setChildren, renderer, charCount, showCount, toast } from './dom.js';
import { t, currentLang } from './i18n.js';
import { oldestFirst, newestFirst } from './store.js';
import { viewersLabel, confirmAction } from './ui.js';
import { REASON_CODES, parseWordList } from './findings.js';
import { startStaff, staffSubline } from './staff.js';
import { createQuestionNode, updateQuestionNode, renderQuestions } from './questions.js';
import { limit, maxLength } from './limits.js';

const MAX_BLOCKED_WORDS = 100;
const MAX_BLOCKED_WORD_CHARS = 40;

const render = renderer(renderAll);
const staff = startStaff({ role: 'moderator', render, onLang: () => { forceRebuild = true; } });

let tab = 'pending';
let tabChosen = false;     // the moderator picked a tab; stop choosing it for them
let selected = null;       // id of the highlighted question
let selectedIndex = 0;     // where it was, so the highlight stays in place when it leaves the list
let panel = null;          // { id, kind: 'edit'|'reject'|'merge' }
let forceRebuild = false;

const leaving = new Set();  // ids being approved/rejected/merged: hidden at once, back if it fails

function visible() {
  const { store } = staff;
  switch (tab) {
    case 'pending': return store.list((q) => q.status === 'pending' && !leaving.has(q.id), oldestFirst);
    case 'approved': return store.queue();
    case 'rejected': return store.byStatus('rejected', newestFirst);
    default: return store.list((q) => q.status === 'answered' || q.status === 'merged', newestFirst);
  }
}

/**
 * Keep the highlight where the moderator's eyes are: on the same question, or, when it just
 * left this list (approved, rejected), on the one that took its place. Returns its index.
 */
function settleSelection(items) {
  let idx = items.findIndex((q) => q.id === selected);
  if (idx < 0 && items.length) {
    idx = Math.min(selectedIndex, items.length - 1);
    selected = items[idx].id;
  }
  selectedIndex = Math.max(0, idx);
  return idx;
}

// ---- actions ----

async function act(body) {
  // A keyboard moderator presses `a` again at once: the next question must already be the one
  // highlighted, not the one whose approval is still on its way.
  const moving = ['approve', 'reject', 'merge'].includes(body.type);
  if (moving) leaving.add(body.question);
  render();
  const ack = await staff.send(body);
  if (moving) leaving.delete(body.question);
  if (ack) panel = null;
  render();
  return ack;
}

const approve = (q, text) => act(text && text !== q.text ? { type: 'approve', question: q.id, text } : { type: 'approve', question: q.id });
/** The patient's own words, personal details and all: only after the moderator confirms. */
function approveOriginal(q) {
  if (!confirmAction(t('modr.confirmOriginal', { text: q.original }))) return null;
  return act({ type: 'approve', question: q.id, original: true });
}
function reject(q, code, reason) {
  const body = { type: 'reject', question: q.id };
  if (code) body.code = code;
  if (reason) body.reason = reason;
  return act(body);
}
const triage = (q, tag) => act({ type: 'triage', question: q.id, tag: q.triage === tag ? null : tag });
const edit = (q, text) => act({ type: 'edit', question: q.id, text });
const merge = (q, into) => act({ type: 'merge', question: q.id, into });
const pin = (q) => act({ type: 'pin', question: q.id, pinned: !q.pinned });

function openPanel(q, kind) {
  if (!canDo(q, kind)) return;
  panel = { id: q.id, kind };
  selected = q.id;
  render();
}

/** The personal details the public text hides from this question (what "approve with original" would show). */
const hidesDetails = (q) => typeof q.original === 'string' && q.original !== q.text
  && (q.findings || []).some((f) => f.kind !== 'blocked_word');

const isMuted = (q) => !!q.author_id && (staff.store.session.muted || []).includes(q.author_id);

async function setMute(q, muted) {
  if (!q.author_id) return;
  if (muted && !confirmAction(t('modr.confirmMute', { name: q.author || t('q.anonymous') }))) return;
  const ack = await staff.send({ type: 'mute', author: q.author_id, muted });
  if (ack) toast(t(muted ? 'modr.muted' : 'modr.unmuted'));
}

/** The suggested duplicates we still hold, best first; `into` says whether a merge may target it. */
function suggestions(q) {
  const out = [];
  for (const s of q.similar || []) {
    const other = staff.store.questions.get(s.id);
    if (!other || other.id === q.id) continue;
    out.push({ q: other, score: s.score, into: other.status === 'approved' || other.status === 'answering' });
  }
  return out.sort((a, b) => b.score - a.score);
}

function mergeIntoTop(q) {
  const top = suggestions(q).find((s) => s.into);
  if (!top || !canDo(q, 'merge')) return false;
  merge(q, top.q.id).then((ack) => { if (ack) toast(t('modr.mergedInto', { id: top.q.id })); });
  return true;
}

function canDo(q, kind) {
  const s = q.status;
  switch (kind) {
    case 'approve': return s === 'pending';
    case 'original': return s === 'pending' && hidesDetails(q);
    case 'triage': return s !== 'rejected' && s !== 'merged';
    case 'mute': return !!q.author_id;
    case 'reject': case 'edit': case 'merge': return s === 'pending' || s === 'approved';
    case 'pin': return s === 'approved' || s === 'answering';
    default: return false;
  }
}

// ---- list items ----

function createItem() {
  const node = createQuestionNode({ actions: true });
  node.refs.similar = h('div', { class: 'similar', hidden: true });
  node.refs.panel = h('div', { class: 'panel', hidden: true });
  node.refs.actions.before(node.refs.similar);
  node.refs.actions.after(node.refs.panel);
  node.refs.similar.addEventListener('click', (e) => {
    const chip = e.target.closest('button[data-into]');
    const q = chip && staff.store.questions.get(Number(node.dataset.id));
    if (!q) return;
    selected = q.id;
    const into = Number(chip.dataset.into);
    if (chip.dataset.merge === '1') merge(q, into).then((ack) => { if (ack) toast(t('modr.mergedInto', { id: into })); });
    else { selected = into; render(); }
  });
  node.addEventListener('click', (e) => {
    if (e.target.closest('button, input, textarea, select, label')) return;
    selected = Number(node.dataset.id);
    render();
  });
  node.refs.actions.addEventListener('click', (e) => {
    const button = e.target.closest('button[data-act]');
    if (!button) return;
    const q = staff.store.questions.get(Number(node.dataset.id));
    if (!q) return;
    selected = q.id;
    const kind = button.dataset.act;
    if (kind === 'approve') approve(q);
    else if (kind === 'original') approveOriginal(q);
    else if (kind === 'pin') pin(q);
    else if (kind === 'clinic' || kind === 'urgent') triage(q, kind);
    else if (kind === 'mute') setMute(q, !isMuted(q));
    else openPanel(q, kind);
  });
  return node;
}

function chip(s) {
  const label = `#${s.q.id} · ${truncate(s.q.text, 24)}`;
  return h('button', {
    class: 'chip', type: 'button', dataset: { into: String(s.q.id), merge: s.into ? '1' : '0' },
    title: s.into ? t('modr.mergeChip', { id: s.q.id }) : t('modr.showChip', { id: s.q.id }),
  }, s.into ? `${t('modr.similar', { id: s.q.id })} ↦ ${truncate(s.q.text, 24)}` : label);
}

function updateItem(node, q) {
  updateQuestionNode(node, q, { store: staff.store, status: tab !== 'pending', review: true });
  node.classList.toggle('selected', q.id === selected);
  node.setAttribute('aria-current', q.id === selected ? 'true' : 'false');

  const ended = staff.store.session && staff.store.session.state === 'ended';
  const muted = isMuted(q);
  const similar = canDo(q, 'merge') && !ended ? suggestions(q) : [];
  const simSig = similar.map((x) => `${x.q.id}:${x.into}:${x.q.text}`).join(',');
  const sig = `${q.status}|${q.pinned}|${ended}|${currentLang()}|${q.triage}|${muted}|${hidesDetails(q)}|${simSig}`;
  if (forceRebuild || node.refs.sig !== sig) {
    node.refs.sig = sig;
    show(node.refs.similar, similar.length > 0);
    setChildren(node.refs.similar, similar.length ? [h('span', { class: 'small muted', text: t('modr.similarLabel') }), similar.map(chip)] : null);
    const buttons = [];
    if (muted) buttons.push(h('span', { class: 'pill rejected', text: t('modr.authorMuted') }));
    if (!ended) {
      if (canDo(q, 'approve')) buttons.push(h('button', { class: 'btn ok small', type: 'button', dataset: { act: 'approve' }, text: t(hidesDetails(q) ? 'modr.approveRedacted' : 'modr.approve') }));
      if (canDo(q, 'original')) buttons.push(h('button', { class: 'btn small', type: 'button', dataset: { act: 'original' }, text: t('modr.approveOriginal') }));
      if (canDo(q, 'pin')) buttons.push(h('button', { class: 'btn small', type: 'button', dataset: { act: 'pin' }, 'aria-pressed': String(q.pinned), text: q.pinned ? t('modr.unpin') : t('modr.pin') }));
      if (canDo(q, 'edit')) buttons.push(h('button', { class: 'btn small', type: 'button', dataset: { act: 'edit' }, text: t('modr.edit') }));
      if (canDo(q, 'merge')) buttons.push(h('button', { class: 'btn small', type: 'button', dataset: { act: 'merge' }, text: t('modr.merge') }));
      if (canDo(q, 'reject')) buttons.push(h('button', { class: 'btn danger small', type: 'button', dataset: { act: 'reject' }, text: t('modr.reject') }));
      if (canDo(q, 'triage')) {
        for (const tag of ['clinic', 'urgent']) {
          buttons.push(h('button', { class: `btn small triage-btn ${tag}`, type: 'button', dataset: { act: tag }, 'aria-pressed': String(q.triage === tag), text: t(`triage.${tag}`) }));
        }
      }
      if (canDo(q, 'mute')) buttons.push(h('button', { class: 'btn small ghost', type: 'button', dataset: { act: 'mute' }, 'aria-pressed': String(muted), text: t(muted ? 'modr.unmute' : 'modr.mute') }));
    }
    setChildren(node.refs.actions, buttons);
    show(node.refs.actions, buttons.length > 0);
  }

  const want = panel && panel.id === q.id && canDo(q, panel.kind) ? panel.kind : null;
  if (node.refs.panelKind !== want || (want && forceRebuild)) {
    node.refs.panelKind = want;
    setChildren(node.refs.panel, want ? buildPanel(q, want) : null);
    show(node.refs.panel, !!want);
    const first = want && node.refs.panel.querySelector('textarea, select, input');
    if (first) requestAnimationFrame(() => first.focus());
  } else if (want === 'merge') {
    refreshMergeTargets(node.refs.panel, q);
  }
}

function cancelButton() {
  return h('button', { class: 'btn small ghost', type: 'button', text: t('cancel'), onclick: () => { panel = null; render(); } });
}

function counted(textarea, max) {
  const counter = h('span', { class: 'counter' });
  const update = () => showCount(counter, charCount(textarea.value), max);
  textarea.addEventListener('input', update);
  update();
  return counter;
}

function buildPanel(q, kind) {
  if (kind === 'edit') {
    const area = h('textarea', { rows: 3, 'aria-label': t('modr.editLabel') });
    area.value = q.text;
    const valid = () => { const n = charCount(area.value); return n > 0 && n <= limit('question_chars'); };
    const save = h('button', { class: 'btn small', type: 'button', text: t('modr.saveEdit'), onclick: () => valid() && edit(q, area.value.trim()) });
    const approveEdited = q.status === 'pending'
      ? h('button', { class: 'btn ok small', type: 'button', text: t('modr.approveEdited'), onclick: () => valid() && approve(q, area.value.trim()) })
      : null;
    area.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        if (valid()) (q.status === 'pending' ? approve(q, area.value.trim()) : edit(q, area.value.trim()));
      }
    });
    return [h('label', { class: 'small', text: t('modr.editLabel') }), area, counted(area, limit('question_chars')),
      h('div', { class: 'controls' }, approveEdited, save, cancelButton())];
  }
  if (kind === 'reject') {
    // A code the patient reads in their own language, and optionally words of the moderator's own.
    const select = h('select', { 'aria-label': t('modr.reasonCode'), dataset: { reasons: '1' } },
      h('option', { value: '', text: t('modr.reasonNone') }),
      REASON_CODES.map((code, i) => h('option', { value: code, text: `${i + 1} · ${t(`reason.${code}`)}` })));
    const input = h('input', { type: 'text', maxlength: maxLength('reason_chars'), 'aria-label': t('modr.reasonOther'), placeholder: t('modr.reasonOther') });
    const send = () => {
      const r = input.value.trim();
      if ((!select.value && !r) || charCount(r) > limit('reason_chars')) return;
      reject(q, select.value || null, r || null);
    };
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); send(); }
    });
    select.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); send(); }
    });
    return [h('label', { class: 'small', text: t('modr.reasonTitle') }), select,
      h('div', { class: 'copy-row' }, input, h('button', { class: 'btn danger small', type: 'button', text: t('modr.reject'), onclick: send })),
      h('div', { class: 'controls' }, cancelButton())];
  }
  // merge
  const select = h('select', { 'aria-label': t('modr.mergeInto') });
  const wrap = [h('label', { class: 'small', text: t('modr.mergeInto') }), select,
    h('div', { class: 'controls' },
      h('button', { class: 'btn small primary', type: 'button', text: t('modr.mergeDo'), onclick: () => select.value && merge(q, Number(select.value)) }),
      cancelButton())];
  select.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && select.value) { e.preventDefault(); merge(q, Number(select.value)); }
  });
  fillMergeTargets(select, q);
  return wrap;
}

function mergeTargets(q) {
  return staff.store.queue().filter((o) => o.id !== q.id);
}

function fillMergeTargets(select, q) {
  const targets = mergeTargets(q);
  const keep = select.value;
  setChildren(select, targets.length
    ? targets.map((o) => h('option', { value: String(o.id) }, `#${o.id} · ${truncate(o.text, 80)} (${t('vote.short', { n: o.votes })} ${o.votes})`))
    : h('option', { value: '', text: t('modr.noTargets') }));
  if (keep && targets.some((o) => String(o.id) === keep)) select.value = keep;
  select.dataset.sig = targets.map((o) => o.id).join(',');
}

function refreshMergeTargets(panelEl, q) {
  const select = panelEl.querySelector('select');
  if (select && select.dataset.sig !== mergeTargets(q).map((o) => o.id).join(',')) fillMergeTargets(select, q);
}

function truncate(s, n) {
  const chars = Array.from(s);
  return chars.length > n ? chars.slice(0, n - 1).join('') + '…' : s;
}

// ---- tabs ----

for (const button of $$('#tabs button')) {
  button.addEventListener('click', () => {
    tab = button.dataset.tab;
    tabChosen = true;
    panel = null;
    selected = null;
    selectedIndex = 0;
    render();
  });
}

// ---- keyboard ----

document.addEventListener('keydown', (e) => {
  if (!staff || e.ctrlKey || e.metaKey || e.altKey) return;
  const typing = e.target.closest && e.target.closest('input, textarea, select');
  // The reason list has focus when the panel opens: a digit there still picks a reason at once.
  const inReasons = e.target.closest && e.target.closest('select[data-reasons]');
  if (e.key === 'Escape') {
    if (panel) {
      panel = null;
      render();
      e.preventDefault();
    }
    return;
  }
  if (typing && !inReasons) return;
  const items = visible();
  const idx = settleSelection(items);
  const q = idx >= 0 ? items[idx] : null;
  const digit = Number(e.key);
  if (panel && panel.kind === 'reject' && digit >= 1 && digit <= REASON_CODES.length && q && q.id === panel.id) {
    e.preventDefault();
    const words = $('#list .q.selected .panel input[type="text"]');
    reject(q, REASON_CODES[digit - 1], words && words.value.trim() ? words.value.trim() : null);
    return;
  }
  if (inReasons) return;
  switch (e.key) {
    case 'j': case 'ArrowDown':
      if (items.length) selected = items[Math.min(items.length - 1, idx + 1)].id;
      panel = null;
      break;
    case 'k': case 'ArrowUp':
      if (items.length) selected = items[Math.max(0, idx - 1)].id;
      panel = null;
      break;
    case 'a': if (q && canDo(q, 'approve')) approve(q); break;
    case 'r': if (q) openPanel(q, 'reject'); break;
    case 'e': if (q) openPanel(q, 'edit'); break;
    case 'm': if (q && !mergeIntoTop(q)) openPanel(q, 'merge'); break;
    case 'M': if (q) openPanel(q, 'merge'); break;
    case 'p': if (q && canDo(q, 'pin')) pin(q); break;
    default: return;
  }
  e.preventDefault();
  render();
  requestAnimationFrame(() => {
    const el = $('#list .q.selected');
    if (el && el.scrollIntoView) el.scrollIntoView({ block: 'nearest' });
  });
});

function renderKeys() {
  const pairs = [['j', 'k', 'keys.move'], ['a', 'keys.approve'], ['r', 'keys.reject'], ['1–7', 'keys.reason'], ['e', 'keys.edit'],
    ['m', 'keys.mergeTop'], ['Shift+M', 'keys.merge'], ['p', 'keys.pin'], ['Esc', 'keys.close']];
  const parts = [];
  for (const p of pairs) {
    const label = p[p.length - 1];
    for (const k of p.slice(0, -1)) parts.push(h('kbd', { text: k }), ' ');
    parts.push(t(label), '  ·  ');
  }
  parts.pop();
  setChildren($('#keys'), parts);
}

// ---- the session's blocked words ----

let blockedDirty = false; // the moderator is editing: a session event must not overwrite the box

$('#blocked-words').addEventListener('input', () => {
  blockedDirty = true;
  renderBlocked();
});

$('#blocked').addEventListener('submit', async (e) => {
  e.preventDefault();
  const words = parseWordList($('#blocked-words').value);
  const error = $('#blocked-error');
  const tooLong = words.find((w) => charCount(w) > MAX_BLOCKED_WORD_CHARS);
  let problem = '';
  if (words.length > MAX_BLOCKED_WORDS) problem = t('modr.blockedTooMany', { n: MAX_BLOCKED_WORDS });
  else if (tooLong) problem = t('modr.blockedTooLong', { word: tooLong, n: MAX_BLOCKED_WORD_CHARS });
  setText(error, problem);
  show(error, !!problem);
  if (problem) return;
  const button = $('#blocked-save');
  button.disabled = true;
  const ack = await staff.send({ type: 'set_blocked_words', words });
  button.disabled = false;
  if (ack) {
    blockedDirty = false;
    toast(t('modr.blockedSaved'));
    render();
  }
});

function renderBlocked() {
  const s = staff.store.session;
  const box = $('#blocked-words');
  if (!blockedDirty && document.activeElement !== box) {
    const text = (s.blocked_words || []).join('\n');
    if (box.value !== text) box.value = text;
  }
  setText($('#blocked-count'), t('modr.blockedCount', { n: parseWordList(box.value).length }));
}

// ---- render ----

function renderAll() {
  if (!staff || !staff.store.session) return;
  const { store } = staff;
  const s = store.session;
  const pending = store.count('pending');
  // the count in the tab title tells a moderator in another tab that questions are waiting
  document.title = `${pending ? `(${pending}) ` : ''}${t('modr.title')} · ${s.title}`;
  setText($('#s-title'), s.title);
  setText($('#s-sub'), staffSubline(s));
  setText($('#s-state'), t(`state.${s.state}`));
  setText($('#s-viewers'), viewersLabel(store.viewers));

  // Post-moderation sessions have nothing pending: start on the public queue.
  if (!tabChosen && s.moderation === 'post' && tab === 'pending' && store.count('pending') === 0) tab = 'approved';

  const counts = {
    pending: store.count('pending'),
    approved: store.count('approved') + store.count('answering'),
    rejected: store.count('rejected'),
    done: store.count('answered') + store.count('merged'),
  };
  setText($('#stat-pending'), counts.pending);
  setText($('#stat-approved'), counts.approved);
  setText($('#stat-rejected'), counts.rejected);
  setText($('#stat-answered'), store.count('answered'));
  for (const k of Object.keys(counts)) setText($(`#count-${k}`), counts[k]);
  for (const b of $$('#tabs button')) b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  renderKeys();
  renderBlocked();

  const items = visible();
  settleSelection(items);
  if (panel && !items.some((q) => q.id === panel.id)) panel = null;

  renderQuestions($('#list'), items, createItem, updateItem, t(`empty.mod.${tab}`));
  forceRebuild = false;
}
