// Moderator console: screen questions as they arrive. Approve, reject with a reason, edit,
// merge into another question, pin. Keyboard: j/k move, a approve, r reject, e edit, m merge,
// p pin, Esc close, 1–4 pick a ready reason while rejecting.
import { $, $$, h, setText, show, setChildren, renderer, charCount, showCount } from './dom.js';
import { t, currentLang } from './i18n.js';
import { oldestFirst, newestFirst } from './store.js';
import { viewersLabel } from './ui.js';
import { startStaff, staffSubline } from './staff.js';
import { createQuestionNode, updateQuestionNode, renderQuestions } from './questions.js';
import { limit, maxLength } from './limits.js';

const REASONS = ['reason.personal', 'reason.notMedical', 'reason.abusive', 'reason.duplicate'];

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
const reject = (q, reason) => act({ type: 'reject', question: q.id, reason });
const edit = (q, text) => act({ type: 'edit', question: q.id, text });
const merge = (q, into) => act({ type: 'merge', question: q.id, into });
const pin = (q) => act({ type: 'pin', question: q.id, pinned: !q.pinned });

function openPanel(q, kind) {
  if (!canDo(q, kind)) return;
  panel = { id: q.id, kind };
  selected = q.id;
  render();
}

function canDo(q, kind) {
  const s = q.status;
  switch (kind) {
    case 'approve': return s === 'pending';
    case 'reject': case 'edit': case 'merge': return s === 'pending' || s === 'approved';
    case 'pin': return s === 'approved' || s === 'answering';
    default: return false;
  }
}

// ---- list items ----

function createItem() {
  const node = createQuestionNode({ actions: true });
  node.refs.panel = h('div', { class: 'panel', hidden: true });
  node.refs.actions.after(node.refs.panel);
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
    else if (kind === 'pin') pin(q);
    else openPanel(q, kind);
  });
  return node;
}

function updateItem(node, q) {
  updateQuestionNode(node, q, { store: staff.store, status: tab !== 'pending' });
  node.classList.toggle('selected', q.id === selected);
  node.setAttribute('aria-current', q.id === selected ? 'true' : 'false');

  const ended = staff.store.session && staff.store.session.state === 'ended';
  const sig = `${q.status}|${q.pinned}|${ended}|${currentLang()}`;
  if (forceRebuild || node.refs.sig !== sig) {
    node.refs.sig = sig;
    const buttons = [];
    if (!ended) {
      if (canDo(q, 'approve')) buttons.push(h('button', { class: 'btn ok small', type: 'button', dataset: { act: 'approve' }, text: t('modr.approve') }));
      if (canDo(q, 'pin')) buttons.push(h('button', { class: 'btn small', type: 'button', dataset: { act: 'pin' }, 'aria-pressed': String(q.pinned), text: q.pinned ? t('modr.unpin') : t('modr.pin') }));
      if (canDo(q, 'edit')) buttons.push(h('button', { class: 'btn small', type: 'button', dataset: { act: 'edit' }, text: t('modr.edit') }));
      if (canDo(q, 'merge')) buttons.push(h('button', { class: 'btn small', type: 'button', dataset: { act: 'merge' }, text: t('modr.merge') }));
      if (canDo(q, 'reject')) buttons.push(h('button', { class: 'btn danger small', type: 'button', dataset: { act: 'reject' }, text: t('modr.reject') }));
    }
    setChildren(node.refs.actions, buttons);
    show(node.refs.actions, buttons.length > 0);
  }

  const want = panel && panel.id === q.id && canDo(q, panel.kind) ? panel.kind : null;
  if (node.refs.panelKind !== want || (want && forceRebuild)) {
    node.refs.panelKind = want;
    setChildren(node.refs.panel, want ? buildPanel(q, want) : null);
    show(node.refs.panel, !!want);
    const first = want && node.refs.panel.querySelector(want === 'reject' ? 'button[data-reason]' : 'textarea, select, input');
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
    const input = h('input', { type: 'text', maxlength: maxLength('reason_chars'), 'aria-label': t('modr.reasonOther'), placeholder: t('modr.reasonOther') });
    const send = (reason) => {
      const r = reason.trim();
      if (r && charCount(r) <= limit('reason_chars')) reject(q, r);
    };
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); send(input.value); }
    });
    const presets = REASONS.map((key, i) => h('button', {
      class: 'btn small', type: 'button', dataset: { reason: String(i + 1) },
      onclick: () => send(t(key)),
    }, h('kbd', { text: String(i + 1) }), ' ', t(key)));
    return [h('div', { class: 'small', text: t('modr.reasonTitle') }), h('div', { class: 'reasons' }, presets),
      h('div', { class: 'copy-row' }, input, h('button', { class: 'btn danger small', type: 'button', text: t('modr.reject'), onclick: () => send(input.value) })),
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
  if (e.key === 'Escape') {
    if (panel) {
      panel = null;
      render();
      e.preventDefault();
    }
    return;
  }
  if (typing) return;
  const items = visible();
  const idx = settleSelection(items);
  const q = idx >= 0 ? items[idx] : null;
  if (panel && panel.kind === 'reject' && /^[1-4]$/.test(e.key) && q && q.id === panel.id) {
    e.preventDefault();
    reject(q, t(REASONS[Number(e.key) - 1]));
    return;
  }
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
    case 'm': if (q) openPanel(q, 'merge'); break;
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
  const pairs = [['j', 'k', 'keys.move'], ['a', 'keys.approve'], ['r', 'keys.reject'], ['e', 'keys.edit'], ['m', 'keys.merge'], ['p', 'keys.pin'], ['Esc', 'keys.close']];
  const parts = [];
  for (const p of pairs) {
    const label = p[p.length - 1];
    for (const k of p.slice(0, -1)) parts.push(h('kbd', { text: k }), ' ');
    parts.push(t(label), '  ·  ');
  }
  parts.pop();
  setChildren($('#keys'), parts);
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

  const items = visible();
  settleSelection(items);
  if (panel && !items.some((q) => q.id === panel.id)) panel = null;

  renderQuestions($('#list'), items, createItem, updateItem, t(`empty.mod.${tab}`));
  forceRebuild = false;
}
