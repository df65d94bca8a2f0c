// The question card every page shows; pages add their own buttons in `node.refs.actions`.
import { $, h, setText, show, setChildren, renderList } from './dom.js';
import { t, formatTime, currentLang } from './i18n.js';
import { highlighted, reasonText } from './findings.js';
import { triageNode, siteLoaded } from './site.js';

/**
 * A new, empty card. `lead` is an optional element shown left of the text (a vote button);
 * `votes` puts a read-only vote count there instead; `actions` adds a row for the page's buttons.
 */
export function createQuestionNode({ lead = null, votes = false, actions = false } = {}) {
  const refs = {};
  if (votes) {
    refs.votes = h('span', { class: 'n' });
    refs.votesLabel = h('span', { class: 'small' });
    lead = h('div', { class: 'votes-static' }, refs.votes, refs.votesLabel);
  }
  refs.text = h('div', { class: 'text' });
  refs.meta = h('div', { class: 'meta' });
  refs.note = h('div', { class: 'note', hidden: true });
  refs.triage = h('div', { hidden: true });
  refs.merged = h('div', { class: 'small muted', hidden: true });
  refs.answer = h('div', { class: 'answer', hidden: true });
  refs.reason = h('div', { class: 'reason', hidden: true });
  refs.actions = actions ? h('div', { class: 'actions' }) : null;
  const node = h('li', { class: 'q' }, lead,
    h('div', { class: 'body' }, refs.text, refs.note, refs.meta, refs.triage, refs.merged, refs.answer, refs.reason, refs.actions));
  node.refs = refs;
  return node;
}

/**
 * Fill a card. Options: `store` (to find merge targets and "mine"), `status` (show the status pill),
 * `mine` (mark the viewer's own questions), `author` (the viewer's own questions show what they
 * typed, what others see instead, and the triage reply), `review` (the moderator: the original
 * with each finding marked, what will be published, the triage tag).
 */
export function updateQuestionNode(node, q, { store = null, status = false, mine = false, author = false, review = false } = {}) {
  const { refs } = node;
  if (refs.votes) {
    setText(refs.votes, q.votes);
    setText(refs.votesLabel, t('vote.short', { n: q.votes }));
  }
  // Vote counts change several times a second; skip the card when nothing it shows changed.
  const target = q.status === 'merged' && store ? store.questions.get(q.merged_into) : null;
  const own = author && !!store && store.isMine(q);
  const sig = [q.id, q.text, q.status, q.pinned, q.edited, q.author, q.asked_at, q.answer, q.reason, q.merged_into,
    target ? target.text : '', status, mine && store ? store.isMine(q) : false, currentLang(),
    q.original, JSON.stringify(q.findings || []), q.triage, q.reason_code, q.original_shown, own, review, siteLoaded()].join('\u0001');
  if (refs.sig === sig) return;
  refs.sig = sig;
  node.className = 'q' + (q.status === 'answering' ? ' answering' : '') + (q.pinned ? ' pinned' : '');
  node.dataset.id = String(q.id);
  node.dataset.status = q.status;
  const original = typeof q.original === 'string' ? q.original : null;
  const hidden = original !== null && original !== q.text;
  if (review) setChildren(refs.text, highlighted(original ?? q.text, q.findings));
  else setText(refs.text, own && original !== null ? original : q.text);
  // The author reads their own words; they must also know that the others do not.
  let note = '';
  if (own && hidden) note = t('q.othersSee', { text: q.text });
  else if (review && hidden) note = t(q.status === 'pending' ? 'q.publishedAs' : 'q.publicText', { text: q.text });
  show(refs.note, !!note);
  setText(refs.note, note);
  const triage = own && (q.triage === 'clinic' || q.triage === 'urgent') ? q.triage : null;
  show(refs.triage, !!triage);
  setChildren(refs.triage, triage ? triageNode(triage) : null);

  const meta = [];
  if (q.status === 'answering') meta.push(h('span', { class: 'pill answering', text: t('status.answering') }));
  else if (status) meta.push(h('span', { class: `pill ${q.status}`, text: t(q.status === 'unsent' ? `unsent.${q.reason}` : `status.${q.status}`) }));
  if (q.pinned) meta.push(h('span', { class: 'pill pin', text: t('q.pinned') }));
  if (review && q.original_shown) meta.push(h('span', { class: 'pill warn', text: t('q.originalShown') }));
  if (review && q.triage) meta.push(h('span', { class: `pill triage-${q.triage}`, text: t(`triage.${q.triage}`) }));
  meta.push(h('span', { text: q.author ? q.author : t('q.anonymous') }));
  if (q.asked_at) meta.push(h('span', { text: formatTime(q.asked_at) }));
  if (q.edited) meta.push(h('span', { text: t('q.edited') }));
  if (mine && store && store.isMine(q)) meta.push(h('span', { class: 'pill', text: t('q.yours') }));
  setChildren(refs.meta, meta);

  const showAnswer = q.status === 'answered' && !!q.answer;
  show(refs.answer, showAnswer);
  if (showAnswer) {
    setChildren(refs.answer, h('strong', { text: t('q.answer') + ' ' }), q.answer);
  }
  const reason = q.status === 'rejected' ? reasonText(q) : '';
  show(refs.reason, !!reason);
  if (reason) setChildren(refs.reason, h('strong', { text: t('q.reason') + ' ' }), reason);

  const isMerged = q.status === 'merged' && q.merged_into !== null && q.merged_into !== undefined;
  show(refs.merged, isMerged);
  if (isMerged) {
    const target = store && store.questions.get(q.merged_into);
    setText(refs.merged, target ? t('q.mergedInto', { text: target.text }) : t('q.mergedIntoId', { id: q.merged_into }));
  }
}

/** An empty-state line inside a list. */
export function emptyItem(text) {
  return h('li', { class: 'state empty' }, h('div', { class: 'icon', 'aria-hidden': 'true', text: '○' }), h('div', { text }));
}

/**
 * Show `items` in `list` with `renderList` (keyed by question id), or `emptyText` when there are
 * none; the empty line is left in place while it says the same.
 */
export function renderQuestions(list, items, create, update, emptyText) {
  if (!items.length) {
    if (list.dataset.empty !== emptyText) {
      setChildren(list, emptyItem(emptyText));
      list.dataset.empty = emptyText;
    }
    return;
  }
  list.dataset.empty = '';
  renderList(list, items, (q) => q.id, create, update);
}

/** The "answering now" card (`#now`): shown with the question being answered, if any. */
export function renderAnswering(q) {
  show($('#now'), !!q);
  if (!q) return;
  setText($('#now-text'), q.text);
  setText($('#now-meta'), `${q.author || t('q.anonymous')} · ${t('vote.count', { n: q.votes })}`);
}
