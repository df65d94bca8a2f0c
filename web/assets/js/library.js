// The popular-science library: the hospital's short videos (MP4, at most 10 minutes), listed on
// the session-list page and attached to sessions ("watch before" / "watch after"). A card opens
// its video in place; the file is served with Range requests, so it starts at once and seeks.
import { h, setChildren } from './dom.js';
import { t } from './i18n.js';
import { api } from './api.js';
import { formatClock } from './replay.js';

let cache = null;

/** `GET /api/videos` (public); [] when the library cannot be reached. */
export async function loadVideos({ fresh = false } = {}) {
  if (cache && !fresh) return cache;
  const data = await api('/api/videos');
  cache = Array.isArray(data) ? data : (data && data.videos) || [];
  return cache;
}

export function languageName(code) {
  return code === 'zh' ? t('lib.lang.zh') : code === 'en' ? t('lib.lang.en') : '';
}

export function videoMeta(v) {
  return [v.expert, formatClock(v.duration_ms), languageName(v.language)].filter(Boolean).join(' · ');
}

let playing = null; // { li, video } of the open card

function close() {
  if (!playing) return;
  playing.video.pause();
  playing.video.removeAttribute('src');
  try { playing.video.load(); } catch { /* ignore */ }
  playing.li.classList.remove('open');
  playing.slot.hidden = true;
  setChildren(playing.slot);
  playing.button.setAttribute('aria-expanded', 'false');
  playing.button.querySelector('.play').textContent = '▶';
  playing = null;
}

/** Open the card's player (closing any other) and start the video. */
export function openCard(li) {
  if (playing && playing.li === li) return playing.video;
  close();
  const { video: v, slot, button } = li.lib;
  const video = h('video', {
    class: 'lib-video', src: v.url || `/api/videos/${encodeURIComponent(v.id)}/video.mp4`,
    controls: true, playsinline: true, preload: 'metadata', dataset: { video: v.id },
  });
  setChildren(slot, video);
  slot.hidden = false;
  li.classList.add('open');
  button.setAttribute('aria-expanded', 'true');
  button.querySelector('.play').textContent = '■';
  playing = { li, video, slot, button };
  const p = video.play();
  if (p && p.catch) p.catch(() => {});
  return video;
}

/** One library video as a card: tap to play in place, tap the close button to stop. */
export function videoCard(v) {
  const slot = h('div', { class: 'lib-player', hidden: true });
  const button = h('button', {
    class: 'lib-open', type: 'button', 'aria-expanded': 'false', dataset: { video: v.id },
    onclick: () => (playing && playing.li === li ? close() : openCard(li)),
  },
  h('span', { class: 'play', 'aria-hidden': 'true', text: '▶' }),
  h('span', { class: 'lib-text' },
    h('span', { class: 'lib-title', text: v.title }),
    v.topic ? h('span', { class: 'lib-topic', text: v.topic }) : null,
    h('span', { class: 'lib-meta', text: videoMeta(v) })));
  const li = h('li', { class: 'lib-card', dataset: { video: v.id } }, button, slot);
  li.lib = { video: v, slot, button };
  return li;
}

/** Cards for `videos` in `list`; the same videos again only get their texts re-drawn (an open player keeps playing). */
export function renderVideos(list, videos) {
  const ids = videos.map((v) => String(v.id)).join(',');
  if (list.dataset.ids === ids) {
    for (const li of Array.from(list.children)) {
      const v = videos.find((x) => String(x.id) === String(li.lib && li.lib.video.id));
      if (v) li.querySelector('.lib-meta').textContent = videoMeta(v);
    }
    return;
  }
  list.dataset.ids = ids;
  if (playing && list.contains(playing.li)) close();
  setChildren(list, videos.map(videoCard));
}

/**
 * The videos attached to a session for its current state: "before" while it is scheduled or
 * live, "after" once it has ended. Returns [{ when, video }] in the session's order.
 */
export function attachedFor(session, library) {
  if (!session || !Array.isArray(session.videos)) return [];
  const when = session.state === 'ended' ? 'after' : 'before';
  const byId = new Map((library || []).map((v) => [String(v.id), v]));
  return session.videos.filter((a) => a && a.when === when && byId.has(String(a.video)))
    .map((a) => byId.get(String(a.video)));
}
