// Tiny DOM helpers shared by every page. User text only ever goes in through text nodes.

/**
 * Build an element. `props`: `class`, `text` (textContent), `on*` (listeners),
 * `dataset` (object), anything else is an attribute (`false`/`null` leaves it out).
 * Children: nodes, strings (as text), arrays, or null.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const key of Object.keys(props)) {
      const value = props[key];
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'text') el.textContent = value;
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'value') el.value = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(typeof child === 'string' || typeof child === 'number'
      ? document.createTextNode(String(child)) : child);
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** Replace all children (Element.replaceChildren is missing on older phones). */
export function setChildren(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, children);
  return el;
}

/** Set text only when it changed (keeps the DOM quiet during frequent updates). */
export function setText(el, text) {
  const s = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== s) el.textContent = s;
}

export function show(el, visible) {
  el.hidden = !visible;
}

/**
 * Keyed list rendering: reuse the node of each key, create missing ones, drop the rest,
 * and put them in order. Nodes are reused, so an open editor inside an item keeps its focus.
 */
export function renderList(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const node of Array.from(container.children)) {
    if (node.dataset.key !== undefined) existing.set(node.dataset.key, node);
  }
  let cursor = container.firstChild;
  const keep = new Set();
  for (const item of items) {
    const key = String(keyOf(item));
    let node = existing.get(key);
    if (!node) {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    keep.add(node);
    if (node !== cursor) container.insertBefore(node, cursor);
    else cursor = cursor.nextSibling;
  }
  for (const node of existing.values()) {
    if (!keep.has(node)) node.remove();
  }
  // anything that is not a keyed item (an old empty-state message) goes too
  for (const node of Array.from(container.children)) {
    if (node.dataset.key === undefined) node.remove();
  }
}

/** Coalesce many "something changed" calls into one render per frame. */
export function renderer(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

let toastBox = null;
/**
 * A short message near the top of the screen, or at the bottom when an element marked
 * `.toast-avoid` (the ask box) is up there: a toast never covers what the patient is typing in.
 */
export function toast(message, { bad = false, ms = 3500 } = {}) {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(toastBox);
    const place = () => { if (toastBox.firstChild) placeToasts(toastBox); };
    window.addEventListener('scroll', place, { passive: true });
    window.addEventListener('resize', place);
  }
  const el = h('div', { class: bad ? 'toast bad' : 'toast', text: message });
  toastBox.appendChild(el);
  placeToasts(toastBox);
  setTimeout(() => el.remove(), ms);
}

const overlap = (a, b) => Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top))
  * (a.right > b.left && a.left < b.right ? 1 : 0);

/** Top or bottom, whichever covers less of the boxes to avoid. */
function placeToasts(box) {
  const avoid = Array.from(document.querySelectorAll('.toast-avoid')).filter((el) => !el.hidden && el.getClientRects().length);
  if (!avoid.length) { box.classList.remove('low'); return; }
  const cost = () => {
    const r = box.getBoundingClientRect();
    return avoid.reduce((sum, el) => sum + overlap(r, el.getBoundingClientRect()), 0);
  };
  box.classList.remove('low');
  const high = cost();
  if (high === 0) return;
  box.classList.add('low');
  if (cost() > high) box.classList.remove('low');
}

/** A centred state block: loading, empty, error or offline. */
export function stateBlock(kind, title, detail, action) {
  const icon = { empty: '○', error: '!', offline: '⚡', ended: '■' }[kind];
  return h('div', { class: `state ${kind}`, role: kind === 'error' ? 'alert' : null },
    kind === 'loading' ? h('div', { class: 'spinner', 'aria-hidden': 'true' }) : null,
    icon ? h('div', { class: 'icon', 'aria-hidden': 'true', text: icon }) : null,
    title ? h('div', { text: title }) : null,
    detail ? h('div', { class: 'small', text: detail }) : null,
    action || null);
}

/** Count Unicode characters the way the server does (trimmed; a Chinese character is one). */
export function charCount(text) {
  return Array.from(text.trim()).length;
}

/** Show `n / max` (or `n` while the limit is unknown) and mark the counter when over. */
export function showCount(counter, n, max) {
  setText(counter, Number.isFinite(max) ? `${n} / ${max}` : String(n));
  counter.classList.toggle('over', n > max);
}
